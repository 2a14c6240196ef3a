# fal.jq - fal.ai's queue, for any model hosted there: submit to
# queue.fal.run/{model}, poll the status URL until COMPLETED, then read
# the result from the response URL (COMPLETED alone is not success).  The
# model per media type is configuration.

def provider: {
  id: "fal",
  name: "fal.ai queue",
  media_types: ["image", "texture", "video", "audio_sfx", "audio_bgm",
                "model_3d"],
  transport: "http",
  base_url: "https://queue.fal.run",
  auth: {header: "Authorization", prefix: "Key ", env: "FAL_KEY"},
  models: {image: "fal-ai/flux/dev", texture: "fal-ai/flux/dev",
           video: "fal-ai/wan-t2v", audio_sfx: "fal-ai/stable-audio",
           audio_bgm: "fal-ai/stable-audio", model_3d: "fal-ai/trellis"},
  # Intervals and timeouts: FR-017's by media type (image 2 s / 60 s,
  # video 5 s / 300 s, SFX 2 s / 30 s, BGM 5 s / 180 s, 3D 10 s / 600 s).
  concurrency: {default: 5, video: 2, model_3d: 2},
  prices: {image: 0.025, texture: 0.025, video: 0.40, audio_sfx: 0.02,
           audio_bgm: 0.05, model_3d: 0.02}
};

def model: .provider.model // .provider.models[.request.media_type];

def validate:
  (if .request.media_type == "model_3d" then
     (if .request.params.reference_image then []
      else ["fal's 3D model needs params.reference_image"] end)
   else need_prompt(4000) end)
  + int_param("width"; 512; 4096) + int_param("height"; 512; 4096)
  + number_param("duration_sec"; 0.5; 120);

def cost: .provider.prices[.request.media_type] // 0;

def submit:
  {method: "POST", path: "/\(model)",
   json: ({prompt: .request.prompt,
           image_size: (if .request.params.width then
                          {width: .request.params.width,
                           height: (.request.params.height // .request.params.width)}
                        else null end),
           seconds_total: .request.params.duration_sec,
           image_url: (.reference.url // (if .reference.data then
             "data:\(.reference.mime_type);base64,\(.reference.data)"
             else null end))} | compact)};

def submitted:
  .response.body as $b
  | if ok | not then http_failure
    elif json_answer | not then unreadable
    elif ($b.request_id | type) != "string" then
      failed("fal: the answer has no request_id")
    else processing($b.request_id;
                    {status_url: $b.status_url, response_url: $b.response_url})
    end;

def poll:
  if .job.provider_state.phase == "result" then
    {method: "GET", url: .job.provider_state.response_url}
  else {method: "GET", url: .job.provider_state.status_url} end;

def output:
  .images[0] // .image // .video // .model_mesh // .audio // .audio_file;

def polled:
  .response.body as $b
  | if .job.provider_state.phase == "result" then
      if ok and json_answer then
        ($b | output) as $o
        | if ($o.url // "") == "" then failed("fal: the result holds no file")
          else completed({url: $o.url, mime_type: $o.content_type,
                          metadata: {request_id: .job.provider_job_id,
                                     model: model, seed: $b.seed}})
          end
      elif .response.status == 400 then
        # Not ready after all: back to the status.
        {status: "processing", state: {phase: "status"}}
      elif .response.status == 422 then
        failed("PROVIDER_ERROR";
               "fal: \(.response.headers["x-fal-error-type"] // "error"): \(($b.detail // [])[0].msg? // body_message)";
               false)
      else http_failure end
    elif ok | not then http_failure
    elif json_answer | not then unreadable
    elif $b.status == "COMPLETED" then
      if $b.error then
        failed("PROVIDER_ERROR"; "fal: \($b.error_type // "error"): \($b.error)"; false)
      else {status: "processing", progress: 95, state: {phase: "result"},
            poll_now: true} end
    else progressing(if $b.status == "IN_PROGRESS" then 50 else 5 end) end;

# Lost creates (mi-recover(1)): fal's queue finds a request by its id
# only; a video is left to an operator, anything else sent again.
def lost_create:
  if .request.media_type == "video" then
    {policy: "hold", reason: "fal: the queue cannot be searched, and a video costs about $0.40"}
  else
    {policy: "resend", reason: "fal: the queue cannot be searched; another costs about $\(cost)"}
  end;

# Webhooks and cancel (mi-providers(5)).  fal signs each delivery with
# ED25519 (keys from its JWKS); the body carries the result document a
# poll of the response URL would get, read here by polled itself.
def webhooks:
  {scheme: "ed25519-jwks", per_request: true,
   jwks_url: "https://rest.alpha.fal.ai/.well-known/jwks.json"};
def with_webhook($url): .query = ((.query // {}) + {fal_webhook: $url});
def webhook_job:
  .delivery.headers["x-fal-webhook-request-id"] // .delivery.body.request_id;
def webhook:
  .delivery.body as $d
  | if ($d.payload | type) != "object" then {status: "poll"}
    else .job.provider_state.phase = "result"
      | .response = {status: (if $d.status == "OK" then 200 else 422 end),
                     headers: {}, body: $d.payload}
      | polled
    end;
def cancel:
  if .job.provider_state.response_url then
    {method: "PUT", url: "\(.job.provider_state.response_url)/cancel"}
  else null end;
# Removed from the queue before it ran: nothing to pay.
def cancelled:
  if ok and (.response.body.status == "CANCELLATION_REQUESTED"
             or .response.body.status == "OK") then
    {status: "completed", cost_usd: 0}
  else failed("fal: cancel refused: HTTP \(.response.status): \(.response.body.status // body_message)")
  end;
