# nano-banana.jq - Gemini 2.5 Flash Image ("Nano Banana"): images and
# seamless textures, answered synchronously with the picture as base64
# inside the JSON.  The size comes from the aspect ratio nearest to
# params.width / params.height.

def provider: {
  id: "nano-banana",
  name: "Google Gemini image",
  media_types: ["image", "texture"],
  transport: "sync",
  base_url: "https://generativelanguage.googleapis.com",
  auth: {header: "x-goog-api-key", prefix: "", env: "GEMINI_API_KEY"},
  model: "gemini-2.5-flash-image",
  timeout_ms: 60000,
  concurrency: 5,
  # Paid tier: $0.30 per 1M input tokens, $30 per 1M output tokens
  # (an image is 1290 tokens, $0.039).
  prices: {usd_per_input_token: 0.0000003, usd_per_output_token: 0.00003,
           per_image: 0.039}
};

def ratios: [["1:1", 1], ["2:3", 2/3], ["3:2", 1.5], ["3:4", 0.75],
             ["4:3", 4/3], ["4:5", 0.8], ["5:4", 1.25], ["9:16", 9/16],
             ["16:9", 16/9], ["21:9", 21/9]];
def aspect:
  ((.request.params.width // 1024) / (.request.params.height // 1024)) as $r
  | ratios | min_by((.[1] - $r) | if . < 0 then -. else . end) | .[0];
def seamless: p("seamless"; .request.media_type == "texture");

def validate:
  need_prompt(8000)
  + int_param("width"; 512; 4096) + int_param("height"; 512; 4096)
  + bool_param("seamless");

def cost: .provider.prices.per_image;

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
                             imageConfig: {aspectRatio: aspect}}}};

def google_failure:
  if [.response.body.error.details[]?.reason] | index(["API_KEY_INVALID"]) then
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
                                  usage: $b.usageMetadata}})
            + {provider_job_id: $b.responseId}
            + (if $u.candidatesTokenCount then
                 {cost_usd: (($u.promptTokenCount // 0) * .provider.prices.usd_per_input_token
                             + $u.candidatesTokenCount * .provider.prices.usd_per_output_token)}
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
