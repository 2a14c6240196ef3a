# blockade-skybox.jq - Blockade Labs Skybox AI: an equirectangular
# skybox from a prompt, then an HDRI export of it (type 4, Radiance .hdr;
# type 5 for params.format "exr") as the environment map.  Model 4 (the
# default) makes 4K skyboxes in a Standard or Enhanced variant; Model 3
# (8K) stays available with MI_BLOCKADE_SKYBOX_MODEL=model-3.

def provider: {
  id: "blockade-skybox",
  name: "Blockade Labs Skybox AI",
  media_types: ["environment_map"],
  transport: "http",
  base_url: "https://backend.blockadelabs.com",
  auth: {header: "x-api-key", prefix: "", env: "BLOCKADE_API_KEY"},
  model: "model-4",
  # Each model has its own styles (GET /api/v1/skybox/styles?model_version=N).
  skybox_style_id: 67,
  # Deviations from FR-017 (2D 2 s / 60 s), see mi-providers(5): a
  # skybox and its HDRI export queue behind others, and polling is
  # rate-limited.
  poll_interval_ms: 3000,
  timeout_ms: 300000,
  concurrency: 2,
  # Dollars per credit; Model 4 Standard 3 credits, Enhanced 6.
  prices: {usd_per_credit: 0.0333, credits: {standard: 3, enhanced: 6, "model-3": 3},
           per_export: 0}
};

def model4: .provider.model == "model-4";
# An Enhanced variant costs 6 credits; which variant_id is Enhanced is
# the account's variant list's to say, so any variant_id is priced so.
def variant: if .request.params.variant_id then "enhanced" else "standard" end;
def export_type: if .request.params.format == "exr" then 5 else 4 end;

def validate:
  need_prompt(if model4 then 2000 else 550 end)
  + int_param("width"; 1024; if model4 then 4096 else 8192 end)
  + enum_param("format"; ["hdr", "exr"])
  + (if model4 then int_param("variant_id"; 1; 1000000)
     elif .request.params.variant_id then ["params.variant_id needs Model 4"]
     else [] end)
  + (if ((.request.params.negative_prompt // "") | length) > 1000 then
       ["params.negative_prompt is longer than 1000 characters"] else [] end);

def cost:
  .provider.prices as $p
  | (if model4 then $p.credits[variant] else $p.credits["model-3"] end)
    * $p.usd_per_credit + $p.per_export;

def submit:
  {method: "POST", path: "/api/v1/skybox",
   json: ({prompt: .request.prompt,
           negative_text: .request.params.negative_prompt,
           model_version: (if model4 then 4 else 3 end),
           variant_id: (if model4 then .request.params.variant_id else null end),
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

# Lost creates (mi-recover(1)).  Blockade lists the account's requests
# (myRequests, newest first): a lost skybox create is the request of the
# job's prompt made since the job started.  An export cannot be looked
# up, and costs nothing more: it is made again.
def lookup:
  ((.job.started_ms // 0) - 60000) as $since
  | (.lookup.page // 1) as $page
  | if .job.provider_state.stage == "export" then null
    elif .response == null then
      {method: "GET", path: "/api/v1/imagine/myRequests",
       query: {limit: 50, offset: (($page - 1) * 50), order: "DESC",
               query: .request.prompt}}
    elif ok | not then http_failure
    elif json_answer | not then unreadable
    else
      (.response.body.data // []) as $reqs
      | .request.prompt as $p
      | [$reqs[] | objects | select(.prompt == $p)
         | select(((.created_at // "") | iso_ms // 0) >= $since)] as $m
      | if ($m | length) > 0 then
          {status: "processing",
           candidates: ($m | sort_by(.created_at) | map(.id | tostring)),
           state: {stage: "skybox",
                   obfuscated_id: ($m | sort_by(.created_at) | .[0].obfuscated_id)}}
        elif .response.body.has_more == true then
          {status: "unknown", next: {page: ($page + 1)}}
        else
          failed("NOT_FOUND"; "blockade: no request of this prompt since the job started"; false)
        end
    end;
def lost_create:
  if .job.provider_state.stage == "export" then
    {policy: "resend", reason: "blockade: exports cannot be listed, and one costs nothing more"}
  else
    {policy: "resend", reason: "blockade: the request list did not settle the create; another skybox costs about $0.10"}
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
# Both answer {"success": true} (the status becomes abort).  Whether
# Blockade refunds an aborted generation is not published: the job keeps
# its estimated cost.
def cancelled:
  if ok and .response.body.success == true then {status: "completed"}
  else failed("blockade: cancel refused: HTTP \(.response.status): \(.response.body.error? // body_message)")
  end;
