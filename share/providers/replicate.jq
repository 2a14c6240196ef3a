# replicate.jq - Replicate's predictions API (https://replicate.com/docs):
# an official model by name (POST /v1/models/{owner}/{name}/predictions)
# or any model by version ("owner/name:version", POST /v1/predictions),
# polled at its urls.get until succeeded, failed or canceled.  Images ask
# for the answer in the create itself (Prefer: wait); every create says
# Cancel-After, so that Replicate stops (and stops charging for) a
# prediction mi has given up on.  Outputs are deleted after 1 hour.

def provider: {
  id: "replicate",
  name: "Replicate predictions",
  media_types: ["image", "texture", "video"],
  transport: "http",
  base_url: "https://api.replicate.com",
  auth: {header: "Authorization", prefix: "Bearer ", env: "REPLICATE_API_TOKEN"},
  # The model per media type; MI_REPLICATE_MODEL picks one for all.
  # Other media types are a line here (and in media_types) away.
  models: {image: "black-forest-labs/flux-schnell",
           texture: "black-forest-labs/flux-schnell",
           video: "minimax/video-01"},
  # Seconds the create may wait for the output (Prefer: wait=N, at most
  # 60); 0 answers at once and leaves the prediction to polling.
  prefer_wait_s: {image: 20, texture: 20, default: 0},
  # FR-017's intervals and timeouts by media type; Cancel-After follows.
  concurrency: {default: 5, video: 2},
  result_ttl_s: 3600,
  # Dollars per output, by model.
  prices: {"black-forest-labs/flux-schnell": 0.003,
           "black-forest-labs/flux-1.1-pro": 0.04,
           "minimax/video-01": 0.50, default: 0.05}
};

def model: .provider.model // .provider.models[.request.media_type];
def by_version: model | test(":");
def wait_s: .provider.prefer_wait_s[.request.media_type] // .provider.prefer_wait_s.default // 0;
# Cancel-After: the job's timeout and a margin (a tenth of it, at least
# 10 s), in whole seconds ("330s" for 300 s).  mi cancels a prediction
# itself at its deadline, after a last look; Replicate stops it only when
# mi is gone or late (a busy machine), never before mi's own deadline.
def cancel_after:
  (if (.provider.timeout_ms | type) == "number" then .provider.timeout_ms / 1000
   else {video: 300, image: 60, texture: 60, audio_sfx: 30, audio_bgm: 180,
         model_3d: 600}[.request.media_type] // 600 end) as $t
  | ($t + ([$t / 10, 10] | max) | ceil) as $s
  | "\($s)s";

def ratios: [["1:1", 1], ["16:9", 16/9], ["21:9", 21/9], ["3:2", 1.5],
             ["2:3", 2/3], ["4:5", 0.8], ["5:4", 1.25], ["3:4", 0.75],
             ["4:3", 4/3], ["9:16", 9/16], ["9:21", 9/21]];
def aspect:
  ((.request.params.width // 1024) / (.request.params.height // 1024)) as $r
  | ratios | min_by((.[1] - $r) | if . < 0 then -. else . end) | .[0];

def validate:
  (if model == null then ["replicate has no model for \(.request.media_type)"]
   else [] end)
  + need_prompt(4000)
  + int_param("width"; 512; 4096) + int_param("height"; 512; 4096)
  + (if .request.media_type == "video" and model == "minimax/video-01" then
       (if (.request.params.duration_sec // 6) != 6 then
          ["params.duration_sec must be 6 for minimax/video-01"] else [] end)
       + enum_param("aspect_ratio"; ["16:9"])
     else [] end);

def cost: .provider.prices[model] // .provider.prices.default;

def input:
  if .request.media_type == "video" then
    {prompt: .request.prompt, prompt_optimizer: true,
     first_frame_image: (.reference.url // (if .reference.data then
       "data:\(.reference.mime_type);base64,\(.reference.data)" else null end))}
  else
    {prompt: (.request.prompt
              + (if .request.media_type == "texture" and
                    p("seamless"; true) then
                   ". Seamless tileable texture, top-down, even lighting."
                 else "" end)),
     aspect_ratio: aspect, output_format: "png", num_outputs: 1,
     image: (.reference.url // (if .reference.data then
       "data:\(.reference.mime_type);base64,\(.reference.data)" else null end))}
  end | compact;

def submit:
  {method: "POST",
   path: (if by_version then "/v1/predictions"
          else "/v1/models/\(model)/predictions" end),
   headers: ({"Cancel-After": cancel_after}
             + (if wait_s > 0 then {Prefer: "wait=\(wait_s)"} else {} end)),
   timeout_ms: ((wait_s + 15) * 1000),
   json: ((if by_version then {version: (model | split(":") | .[1])} else {} end)
          + {input: input})};

def out_url:
  .output | if type == "string" then . elif type == "array" then
    (map(select(type == "string")) | .[0]) else null end;
def ext_of($u):
  ($u | split("?")[0] | capture("\\.(?<e>[A-Za-z0-9]+)$").e // null) as $e
  | if $e == null then
      {video: "mp4", image: "png", texture: "png"}[.request.media_type] // "bin"
    else ($e | ascii_downcase | if . == "jpeg" then "jpg" else . end) end;

# A prediction object, from the create or a poll.
def prediction:
  .response.body as $b
  | if $b.status == "succeeded" then
      ($b | out_url) as $u
      | if $u == null then failed("replicate: the prediction succeeded without a file")
        else completed({url: $u, ext: ext_of($u),
                        metadata: {prediction_id: $b.id, model: $b.model,
                                   version: $b.version,
                                   predict_time: $b.metrics.predict_time}}) end
    elif $b.status == "failed" then
      failed("PROVIDER_ERROR"; "replicate: \($b.error // "the prediction failed")";
             false)
    elif $b.status == "canceled" then
      failed("PROVIDER_ERROR"; "replicate: the prediction was canceled"; false)
    elif $b.status == "processing" then progressing(50)
    else progressing(5) end;

def submitted:
  .response.body as $b
  | if ok | not then http_failure
    elif json_answer | not then unreadable
    elif ($b.id | type) != "string" then failed("replicate: the answer has no id")
    else
      prediction as $o
      | if $o.status == "processing" then
          processing($b.id; {get: $b.urls.get})
        else $o + {provider_job_id: $b.id} end
    end;

def poll: {method: "GET", path: "/v1/predictions/\(.job.provider_job_id)"};

def polled:
  if ok | not then http_failure
  elif json_answer | not then unreadable
  else prediction end;

# Lost creates (mi-recover(1)).  Replicate lists the account's
# predictions, newest first, a page at a time (GET /v1/predictions:
# {previous, next, results}; next is the URL of the following page, or
# null).  A create whose answer was lost is the prediction of the job's
# model (its version, for a model named by version) and input made
# since the job's create went out (a minute of clock skew allowed); a
# reference image is not compared (the lookup has the request, not the
# image sent).  The pages end at the first prediction older than that,
# or where next is null.  next's query (Replicate's cursor) is asked of
# the base URL itself, so that the key goes nowhere else.
def lookup:
  ((.job.started_ms // 0) - 60000) as $since
  | (.lookup.page // 1) as $page
  | if .response == null then
      {method: "GET",
       path: ("/v1/predictions"
              + (if $page > 1 and (.lookup.query | type) == "string"
                 then "?" + .lookup.query else "" end))}
    elif ok | not then http_failure
    elif json_answer | not then unreadable
    elif (.response.body.results | type) != "array" then unreadable
    else
      .response.body as $b
      | model as $m
      | (input | del(.image, .first_frame_image)) as $want
      | [$b.results[] | objects
         | . + {ms: ((.created_at // "") | iso_ms // 0)}] as $all
      | [$all[]
         | select(.ms >= $since)
         | select(if $m | test(":") then
                    .version == ($m | split(":") | .[1])
                    and (.model // ($m | split(":") | .[0]))
                        == ($m | split(":") | .[0])
                  else .model == $m end)
         | select((.input // {} | del(.image, .first_frame_image)) == $want)]
        as $found
      | ($b.next | if type == "string" then
           (capture("\\?(?<q>[^#]+)").q // null) else null end) as $q
      | if ($found | length) > 0 then
          {status: "processing",
           candidates: ($found | sort_by(.ms) | map(.id)),
           state: {get: ($found | sort_by(.ms) | .[0].urls.get)}}
          + (if $q then {next: {page: ($page + 1), query: $q}} else {} end)
        elif $q != null and ($all | length) > 0 and
             ([$all[] | .ms] | min) >= $since then
          {status: "unknown", next: {page: ($page + 1), query: $q}}
        else
          failed("NOT_FOUND"; "replicate: no prediction of this model and input since the job started"; false)
        end
    end;
def lost_create:
  {policy: "resend",
   reason: "replicate: the prediction list did not settle the create; another prediction costs about $\(cost)"};

# Webhooks and cancel (mi-providers(5)).  Replicate signs deliveries with
# Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature:
# HMAC-SHA256 over "id.timestamp.body" with the account's whsec_ secret,
# from GET /v1/webhooks/default/secret, in MI_REPLICATE_WEBHOOK_SECRET).
# A create names the URL and asks for the completed event only (sent
# when the prediction succeeds, fails or is canceled); the body is the
# prediction object a poll would get, read here by polled itself.
def webhooks: {scheme: "standard-webhooks", per_request: true};
def with_webhook($url):
  .json.webhook = $url | .json.webhook_events_filter = ["completed"];
def webhook_job: .delivery.body | objects | .id | strings;
def webhook:
  .delivery.body as $d
  | if ($d | type) != "object" or ($d.status | type) != "string" then
      {status: "poll"}
    else .response = {status: 200, headers: {}, body: $d} | polled end;
# POST /v1/predictions/{id}/cancel answers with the prediction.
def cancel:
  if .job.provider_job_id then
    {method: "POST",
     path: "/v1/predictions/\(.job.provider_job_id)/cancel"}
  else null end;
# Prices are per output: a prediction canceled before it made one costs
# nothing; one that had already ended costs what it did.
def cancelled:
  .response.body as $b
  | if ok and json_answer and $b.status == "canceled" then
      {status: "completed", cost_usd: 0}
    elif ok and json_answer and $b.status == "succeeded" then
      failed("replicate: cancel too late: the prediction succeeded")
      + {cost_usd: cost}
    elif ok and json_answer and $b.status == "failed" then
      failed("replicate: cancel too late: the prediction failed")
    else
      failed("replicate: cancel refused: HTTP \(.response.status): \($b.detail? // body_message)")
    end;
