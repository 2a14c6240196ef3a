# nano-banana-video.jq - Veo 3.1 through the Gemini API: text, a first
# frame (params.reference_image), a last frame (params.last_frame) or up
# to 3 reference images (params.reference_images) to video, as a
# long-running operation polled until "done" (absent while running).  The
# video download needs the key; Google deletes it after 2 days.

def provider: {
  id: "nano-banana-video",
  name: "Google Veo 3.1 (Gemini API)",
  media_types: ["video"],
  transport: "http",
  base_url: "https://generativelanguage.googleapis.com",
  auth: {header: "x-goog-api-key", prefix: "", env: "GEMINI_API_KEY"},
  download_auth: true,
  # Veo 3.1 Fast: Veo 3.1's durations, resolutions and frame controls
  # at a quarter of the price; MI_NANO_BANANA_VIDEO_MODEL picks another
  # (veo-3.1-generate-preview, veo-3.1-lite-generate-preview, or the
  # Vertex GA ids veo-3.1-*-001).  Veo 3.0 ids were retired 2026-06-30.
  model: "veo-3.1-fast-generate-preview",
  # Deviations from FR-017 (video 5 s / 300 s), see mi-providers(5):
  # Veo takes 11 s to 6 min, and Google suggests polling every 10 s.
  poll_interval_ms: 10000,
  timeout_ms: 420000,
  concurrency: 2,
  result_ttl_s: 172800,
  # Dollars per second of output (with audio), by model and resolution.
  prices: {"veo-3.1-fast-generate-preview": {"720p": 0.10, "1080p": 0.12, "4k": 0.30},
           "veo-3.1-fast-generate-001": {"720p": 0.10, "1080p": 0.12, "4k": 0.30},
           "veo-3.1-generate-preview": {"720p": 0.40, "1080p": 0.40, "4k": 0.60},
           "veo-3.1-generate-001": {"720p": 0.40, "1080p": 0.40, "4k": 0.60},
           "veo-3.1-lite-generate-preview": {"720p": 0.05, "1080p": 0.08},
           "veo-3.1-lite-generate-001": {"720p": 0.05, "1080p": 0.08},
           "veo-2.0-generate-001": {"default": 0.35},
           "default": {"default": 0.40}}
};

def veo2: .provider.model | startswith("veo-2");
def lite: .provider.model | test("lite");
def duration: .request.params.duration_sec // 8;
def resolution: .request.params.resolution // "720p";
def refs: .request.params.reference_images // [];
def stored($r): ($r | type) == "string" and ($r | test("/api/assets/"));

def validate:
  (if .request.params.reference_image then [] else need_prompt(4000) end)
  + (duration as $d
     | if veo2 then
         (if ($d | type) != "number" or $d < 5 or $d > 8 or $d != ($d | floor)
          then ["params.duration_sec must be 5 to 8 seconds for \(.provider.model)"]
          else [] end)
       elif [4, 6, 8] | index([$d]) then []
       else ["params.duration_sec must be 4, 6 or 8 for \(.provider.model)"] end)
  + enum_param("resolution"; if veo2 then ["720p"] elif lite then ["720p", "1080p"]
                             else ["720p", "1080p", "4k"] end)
  + (if (resolution == "1080p" or resolution == "4k") and duration != 8 then
       ["\(resolution) needs params.duration_sec 8"] else [] end)
  + enum_param("aspect_ratio"; ["16:9", "9:16"])
  + bool_param("loop")
  + (.request.params.reference_image as $r
     | if $r and (stored($r) | not) then
         ["params.reference_image must be a stored asset"] else [] end)
  + (.request.params.last_frame as $r
     | if $r == null then []
       elif (stored($r) | not) then ["params.last_frame must be a stored asset"]
       elif .request.params.reference_image == null then
         ["params.last_frame needs params.reference_image (the first frame)"]
       else [] end)
  + (if (refs | type) != "array" then ["params.reference_images must be an array"]
     elif refs == [] then []
     elif veo2 then ["\(.provider.model) takes no reference images"]
     elif (refs | length) > 3 then ["params.reference_images takes at most 3 images"]
     elif (refs | all(stored(.)) | not) then
       ["params.reference_images must be stored assets"]
     elif duration != 8 then ["reference images need params.duration_sec 8"]
     elif (.request.prompt // "") == "" then ["reference images need a prompt"]
     else [] end);

def cost:
  (.provider.prices[.provider.model] // .provider.prices.default) as $m
  | ($m[resolution] // $m.default // 0.40) * duration;

# Loop intent travels in the prompt: Veo has no loop parameter.
def prompt_text:
  (.request.prompt // "")
  + (if .request.params.loop then
       ". Seamless loop: the last frame matches the first, continuous motion, no cuts."
     else "" end);

def inline($r): {bytesBase64Encoded: $r.data, mimeType: $r.mime_type};

def submit:
  {method: "POST",
   path: "/v1beta/models/\(.provider.model):predictLongRunning",
   json: {instances: [{prompt: prompt_text}
                      + (if .reference.data then {image: inline(.reference)}
                         else {} end)
                      + (if .references.last_frame.data then
                           {lastFrame: inline(.references.last_frame)}
                         else {} end)
                      + (if (.references.images // []) != [] then
                           {referenceImages: [.references.images[]
                              | select(.data)
                              | {image: inline(.), referenceType: "asset"}]}
                         else {} end)],
          parameters: ({aspectRatio: (.request.params.aspect_ratio // "16:9"),
                        durationSeconds: duration,
                        resolution: resolution,
                        negativePrompt: .request.params.negative_prompt,
                        personGeneration: "allow_adult"} | compact)}};

# Google's error envelope: a bad key is a 400 with reason API_KEY_INVALID.
def google_failure:
  # any, not index(["..."]): jq 1.6 leaks the strings index compares.
  if any(.response.body.error.details[]?; .reason == "API_KEY_INVALID") then
    failed("CONFIG_ERROR"; "\(.provider.id) refused the key in \(.provider.auth.env)"; false)
  else http_failure end;

def submitted:
  if ok | not then google_failure
  elif json_answer | not then unreadable
  elif (.response.body.name | type) != "string" then
    failed("veo: the answer has no operation name")
  else processing(.response.body.name; {operation: .response.body.name}) end;

def poll: {method: "GET", path: "/v1beta/\(.job.provider_job_id)"};

def polled:
  .response.body as $op
  | if ok | not then google_failure
    elif json_answer | not then unreadable
    elif ($op.done // false) | not then {status: "processing"}
    elif $op.error then
      failed("PROVIDER_ERROR"; "veo: \($op.error.message // "generation failed")"; false)
    else
      ($op.response.generateVideoResponse // {}) as $r
      | (($r.generatedSamples // [])[0].video.uri) as $uri
      | if $uri then
          completed({url: $uri, ext: "mp4", mime_type: "video/mp4",
                     metadata: {operation: $op.name, model: .provider.model}})
        elif ($r.raiMediaFilteredCount // 0) > 0 then
          failed("PROVIDER_ERROR";
                 "veo filtered the video: \(($r.raiMediaFilteredReasons // []) | join("; "))";
                 false)
        else failed("veo: the operation ended without a video") end
    end;

# Lost creates (mi-recover(1)): an operation's name is its only handle
# and the Gemini API lists none by request; a video costs dollars, so an
# operator decides.
def lost_create:
  {policy: "hold",
   reason: "veo: operations cannot be found by request, and a video costs up to \(cost * 100 | round / 100 | tostring) dollars"};

# Webhooks (mi-providers(5)).  The Gemini API signs deliveries with
# Standard Webhooks.  The project's webhook (its WebhookService; the
# signing secret, shown once, in MI_NANO_BANANA_VIDEO_WEBHOOK_SECRET)
# points at /hooks/nano-banana-video.  A video.generated delivery is
# thin, so it makes mi poll the operation at once.  Veo operations have
# no cancel.
def webhooks: {scheme: "standard-webhooks", per_request: false};
def webhook_job:
  .delivery.body | objects
  | (.data.operation // .data.name // .operation // .name) | strings;
def webhook: {status: "poll"};
