# blockade-skybox.jq - Blockade Labs Skybox AI: an equirectangular
# skybox from a prompt, then an HDRI export of it (type 4, Radiance .hdr;
# type 5 for params.format "exr") as the environment map.

def provider: {
  id: "blockade-skybox",
  name: "Blockade Labs Skybox AI",
  media_types: ["environment_map"],
  transport: "http",
  base_url: "https://backend.blockadelabs.com",
  auth: {header: "x-api-key", prefix: "", env: "BLOCKADE_API_KEY"},
  skybox_style_id: 67,
  poll_interval_ms: 3000,
  timeout_ms: 300000,
  concurrency: 2,
  prices: {per_skybox: 0.10, per_export: 0}
};

def export_type: if .request.params.format == "exr" then 5 else 4 end;

def validate:
  need_prompt(550)
  + int_param("width"; 1024; 8192)
  + enum_param("format"; ["hdr", "exr"]);

def cost: .provider.prices.per_skybox + .provider.prices.per_export;

def submit:
  {method: "POST", path: "/api/v1/skybox",
   json: ({prompt: .request.prompt,
           negative_text: .request.params.negative_prompt,
           skybox_style_id: (.request.params.skybox_style_id
                             // .provider.skybox_style_id)} | compact)};

# 403 is a refused key or a lack of credits.
def blockade_failure:
  if .response.status == 403 and
     (((.response.body | objects | .error) // "") | tostring | test("key"; "i") | not) then
    failed("PROVIDER_ERROR"; "blockade: HTTP 403: \(body_message)"; false)
  else http_failure end;

def submitted:
  .response.body as $b
  | if ok | not then blockade_failure
    elif json_answer | not then unreadable
    elif .job.provider_state.stage == "export" then
      # The export: complete at once for some types, else polled.
      if $b.status == "complete" and ($b.file_url // "") != "" then
        completed({url: $b.file_url,
                   ext: (if export_type == 5 then "exr" else "hdr" end),
                   metadata: {export_id: $b.id, type: $b.type,
                              skybox_id: .job.provider_state.obfuscated_id}})
      elif $b.id then {status: "processing", state: {export_id: $b.id}}
      else failed("blockade: the export answer has no id") end
    elif $b.id == null then failed("blockade: the answer has no id")
    else processing($b.id | tostring;
                    {stage: "skybox", obfuscated_id: $b.obfuscated_id}) end;

def poll:
  if .job.provider_state.stage == "export" then
    {method: "GET", path: "/api/v1/skybox/export/\(.job.provider_state.export_id)"}
  else {method: "GET", path: "/api/v1/imagine/requests/\(.job.provider_job_id)"} end;

def polled:
  (if json_answer then .response.body.request // .response.body else null end) as $r
  | if ok | not then blockade_failure
    elif json_answer | not then unreadable
    elif $r.status == "error" or $r.status == "abort" then
      failed("PROVIDER_ERROR";
             "blockade: \(.job.provider_state.stage // "skybox") \($r.status): \($r.error_message // "no message")";
             false)
    elif .job.provider_state.stage == "export" then
      if $r.status == "complete" then
        completed({url: $r.file_url,
                   ext: (if export_type == 5 then "exr" else "hdr" end),
                   metadata: {export_id: $r.id, type: $r.type,
                              skybox_id: .job.provider_state.obfuscated_id,
                              skybox_file_url: .job.provider_state.skybox_file_url}})
      else progressing(80) end
    elif $r.status == "complete" then
      {status: "processing", progress: 70,
       state: {stage: "export", skybox_file_url: $r.file_url,
               depth_map_url: $r.depth_map_url},
       create: {method: "POST", path: "/api/v1/skybox/export",
                json: {skybox_id: .job.provider_state.obfuscated_id,
                       type_id: export_type}}}
    else progressing({pending: 5, dispatched: 20, processing: 40}[$r.status] // 10)
    end;

# Webhooks and cancel (mi-providers(5)).  How Blockade signs its
# webhooks was not published with the scheme, so a delivery (the request
# object) only makes mi poll at once.  Cancel: DELETE of the request, or
# of the export once there is one.
def webhooks: {scheme: "none", per_request: true};
def with_webhook($url):
  if .path == "/api/v1/skybox" then .json.webhook_url = $url else . end;
def webhook_job:
  .delivery.body | objects | (.request // .) | .id | numbers // strings
  | tostring;
def cancel:
  if .job.provider_state.stage == "export" and .job.provider_state.export_id
  then {method: "DELETE",
        path: "/api/v1/skybox/export/\(.job.provider_state.export_id)"}
  elif .job.provider_job_id then
    {method: "DELETE", path: "/api/v1/imagine/requests/\(.job.provider_job_id)"}
  else null end;
