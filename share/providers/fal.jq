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
  # The Platform API, where a lost submit is looked up.
  api_url: "https://api.fal.ai",
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
# The queue's URLs of a request are under the model's app (its first
# two path segments), whatever subpath the submit named.
def app: model | split("/") | .[0:2] | join("/");
def queue_url:
  "\(.provider.base_url)/\(app)/requests/\(.job.provider_job_id)";
def response_url: .job.provider_state.response_url // queue_url;

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
    {method: "GET", url: response_url}
  else {method: "GET",
        url: (.job.provider_state.status_url // "\(queue_url)/status")} end;

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

# Lost creates (mi-recover(1)).  fal's Platform API lists an endpoint's
# requests with their inputs (GET api.fal.ai/v1/models/requests/
# by-endpoint, expand=payloads: {items, has_more, next_cursor}, newest
# first by end time): a lost submit is the request of the job's model
# whose input holds every field the submit sent, sent since the job's
# create went out (two minutes of clock skew allowed).  A reference
# image is not compared (the lookup has the request, not the image
# sent), so a request without a prompt cannot be told from another.  A
# request still queued or running is not listed, so one not found may
# yet exist: a video is then left to an operator, anything else sent
# again (the lookup waits for mi-recover's settle time first).
def lookup:
  ((.job.started_ms // 0) - 120000) as $since
  | (.lookup.page // 1) as $page
  | (submit.json | del(.image_url)) as $want
  | if ($want.prompt // "") == "" then null
    elif .response == null then
      {method: "GET",
       url: "\(.provider.api_url // "https://api.fal.ai")/v1/models/requests/by-endpoint",
       query: ({endpoint_id: model, expand: "payloads", limit: 100,
                start: ($since / 1000 | floor | todate)}
               + (if $page > 1 and (.lookup.cursor | type) == "string"
                  then {cursor: .lookup.cursor} else {} end))}
    elif ok | not then http_failure
    elif json_answer | not then unreadable
    elif (.response.body.items | type) != "array" then unreadable
    else
      .response.body as $b
      | [$b.items[] | objects
         | . + {ms: ((.sent_at // .started_at // "") | iso_ms // 0)}
         | select(.ms >= $since and (.request_id | type) == "string")
         | select((.json_input | type) == "object")
         | select(.json_input as $in | all($want | keys[]; $in[.] == $want[.]))]
        as $found
      | ($b.next_cursor | if type == "string" and . != "" then . else null end)
        as $c
      | if ($found | length) > 0 then
          {status: "processing",
           candidates: ($found | sort_by(.ms) | map(.request_id)),
           state: {phase: "status"}}
          + (if $c then {next: {page: ($page + 1), cursor: $c}} else {} end)
        elif $c != null and $b.has_more != false then
          {status: "unknown", next: {page: ($page + 1), cursor: $c}}
        else
          # Absent from the list proves nothing (the request may still
          # run): lost_create decides.
          {status: "unknown"}
        end
    end;
def lost_create:
  if .request.media_type == "video" then
    {policy: "hold", reason: "fal: the request list did not settle the create, and a video costs about $0.40"}
  else
    {policy: "resend", reason: "fal: the request list did not settle the create; another costs about $\(cost)"}
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
  if .job.provider_job_id then {method: "PUT", url: "\(response_url)/cancel"}
  else null end;
# Removed from the queue before it ran: nothing to pay.
def cancelled:
  if ok and (.response.body.status == "CANCELLATION_REQUESTED"
             or .response.body.status == "OK") then
    {status: "completed", cost_usd: 0}
  else failed("fal: cancel refused: HTTP \(.response.status): \(.response.body.status // body_message)")
  end;
