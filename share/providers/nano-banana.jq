# nano-banana.jq - Gemini image ("Nano Banana Pro", gemini-3-pro-image):
# images and seamless textures, answered synchronously with the picture
# as base64 inside the JSON.  The shape comes from the aspect ratio
# nearest to params.width / params.height, the size (1K, 2K or 4K) from
# the larger of the two, so that 4096x4096 asked is 4096x4096 made.

def provider: {
  id: "nano-banana",
  name: "Google Gemini image (Nano Banana Pro)",
  media_types: ["image", "texture"],
  transport: "sync",
  base_url: "https://generativelanguage.googleapis.com",
  auth: {header: "x-goog-api-key", prefix: "", env: "GEMINI_API_KEY"},
  # Stable since 2026-05-29.  MI_NANO_BANANA_MODEL picks another:
  # gemini-3.1-flash-image-preview (Nano Banana 2, 0.5K-4K),
  # gemini-3.1-flash-lite-image (1K only) or gemini-2.5-flash-image
  # (1K only, no imageSize).
  model: "gemini-3-pro-image",
  timeout_ms: 60000,
  concurrency: 5,
  # Paid tier, per model: input and output tokens, and a flat price per
  # image when the answer carries no usage.
  prices: {"gemini-3-pro-image": {usd_per_input_token: 0.000002,
                                  usd_per_output_token: 0.00012,
                                  per_image: 0.134, per_image_4k: 0.24},
           "gemini-3-pro-image-preview": {usd_per_input_token: 0.000002,
                                          usd_per_output_token: 0.00012,
                                          per_image: 0.134, per_image_4k: 0.24},
           "gemini-2.5-flash-image": {usd_per_input_token: 0.0000003,
                                      usd_per_output_token: 0.00003,
                                      per_image: 0.039},
           "default": {usd_per_input_token: 0.0000005,
                       usd_per_output_token: 0.00006, per_image: 0.067}}
};

def price: .provider.prices[.provider.model] // .provider.prices.default;
def sized: .provider.model | test("^gemini-(3|nano-banana)") and (test("lite") | not);

def ratios: [["1:1", 1], ["2:3", 2/3], ["3:2", 1.5], ["3:4", 0.75],
             ["4:3", 4/3], ["4:5", 0.8], ["5:4", 1.25], ["9:16", 9/16],
             ["16:9", 16/9], ["21:9", 21/9]];
def aspect:
  ((.request.params.width // 1024) / (.request.params.height // 1024)) as $r
  | ratios | min_by((.[1] - $r) | if . < 0 then -. else . end) | .[0];
def image_size:
  ([.request.params.width // 1024, .request.params.height // 1024] | max) as $m
  | if $m <= 1024 then "1K" elif $m <= 2048 then "2K" else "4K" end;
def seamless: p("seamless"; .request.media_type == "texture");

def validate:
  need_prompt(8000)
  + int_param("width"; 512; 4096) + int_param("height"; 512; 4096)
  + bool_param("seamless");

def cost:
  if sized and image_size == "4K" then price.per_image_4k // price.per_image
  else price.per_image end;

def prompt_text:
  (.request.prompt // "")
  + (if seamless then
       ". Seamless tileable texture: edges wrap on all sides, top-down, even lighting, no perspective, no shadows."
     else "" end);

def submit:
  {method: "POST",
   path: "/v1beta/models/\(.provider.model):generateContent",
   json: {contents: [{role: "user",
                      parts: ((if .reference.data then
                                 [{inlineData: {mimeType: .reference.mime_type,
                                                data: .reference.data}}]
                               else [] end)
                              + [{text: prompt_text}])}],
          generationConfig: {responseModalities: ["TEXT", "IMAGE"],
                             imageConfig: ({aspectRatio: aspect}
                                           + (if sized then {imageSize: image_size}
                                              else {} end))}}};

def google_failure:
  # any, not index(["..."]): jq 1.6 leaks the strings index compares.
  if any(.response.body.error.details[]?; .reason == "API_KEY_INVALID") then
    failed("CONFIG_ERROR"; "\(.provider.id) refused the key in \(.provider.auth.env)"; false)
  else http_failure end;

def submitted:
  .response.body as $b
  | if ok | not then google_failure
    elif json_answer | not then unreadable
    else
      [($b.candidates // [])[0].content.parts[]?
       | (.inlineData // .inline_data) | select(. != null)] as $imgs
      | if ($imgs | length) > 0 then
          ($b.usageMetadata // {}) as $u
          | completed({data: $imgs[0].data,
                       mime_type: ($imgs[0].mimeType // $imgs[0].mime_type),
                       metadata: {model: $b.modelVersion,
                                  response_id: $b.responseId,
                                  aspect_ratio: aspect,
                                  image_size: (if sized then image_size else null end),
                                  usage: $b.usageMetadata}})
            + {provider_job_id: $b.responseId}
            + (if $u.candidatesTokenCount then
                 {cost_usd: (($u.promptTokenCount // 0) * price.usd_per_input_token
                             + $u.candidatesTokenCount * price.usd_per_output_token)}
               else {} end)
        else
          failed("PROVIDER_ERROR";
                 "gemini returned no image (finishReason \($b.candidates[0].finishReason // "none"), blockReason \($b.promptFeedback.blockReason // "none"))";
                 false)
        end
    end;

# Lost creates (mi-recover(1)): the picture was only in the lost answer.
def lost_create:
  {policy: "resend",
   reason: "gemini: synchronous, the image was only in the lost answer; another costs about $0.04"};
