# elevenlabs-sfx.jq - ElevenLabs sound effects: a text in, the MP3 bytes
# straight back (synchronous, no job id), 0.5 to 30 seconds, optionally
# a seamless loop (params.loop, eleven_text_to_sound_v2).

def provider: {
  id: "elevenlabs-sfx",
  name: "ElevenLabs sound effects",
  media_types: ["audio_sfx"],
  transport: "sync",
  base_url: "https://api.elevenlabs.io",
  auth: {header: "xi-api-key", prefix: "", env: "ELEVENLABS_API_KEY"},
  model: "eleven_text_to_sound_v2",
  output_format: "mp3_44100_128",
  timeout_ms: 30000,
  concurrency: 2,
  # 20 credits a second when the duration is set, 100 when automatic.
  prices: {usd_per_credit: 0.0003, credits_per_second: 20, credits_auto: 100}
};

def validate:
  need_prompt(1000)
  + number_param("duration_sec"; 0.5; 30)
  + enum_param("sfx_type"; ["click", "spin", "flip", "scratch", "match",
                            "win", "lose", "countdown", "reveal", "confetti"])
  + bool_param("loop")
  + number_param("prompt_influence"; 0; 1)
  + (if .request.params.loop == true and
        (.provider.model | startswith("eleven_text_to_sound_v2") | not) then
       ["params.loop needs eleven_text_to_sound_v2"] else [] end);

def cost:
  .provider.prices as $p
  | (if .request.params.duration_sec then
       .request.params.duration_sec * $p.credits_per_second
     else $p.credits_auto end) * $p.usd_per_credit;

def text:
  (.request.prompt // "")
  + (if .request.params.sfx_type then
       " (game UI sound: \(.request.params.sfx_type))" else "" end);

def submit:
  {method: "POST", path: "/v1/sound-generation",
   query: {output_format: .provider.output_format},
   headers: {Accept: "audio/mpeg"},
   json: ({text: text,
           duration_seconds: .request.params.duration_sec,
           prompt_influence: (.request.params.prompt_influence // 0.3),
           loop: .request.params.loop,
           model_id: .provider.model} | compact)};

def submitted:
  if ok | not then
    if (.response.body | objects | .detail | objects | .status) == "quota_exceeded" then
      failed("PROVIDER_ERROR"; "elevenlabs: out of credits"; false)
    else http_failure end
  elif .response.file == null then
    failed("elevenlabs: the answer holds no audio")
  elif (.response.content_type | startswith("audio/")) | not then
    failed("elevenlabs: the answer is \(.response.content_type), not audio")
  else
    completed({body: true, ext: "mp3", mime_type: "audio/mpeg",
               metadata: {request_id: .response.headers["request-id"],
                          model: .provider.model}})
    + (if .response.headers["request-id"] then
         {provider_job_id: .response.headers["request-id"]} else {} end)
  end;

# Lost creates (mi-recover(1)): the sound exists only in the answer that
# was lost, and ElevenLabs keeps no task to ask for; a sound costs cents.
def lost_create:
  {policy: "resend",
   reason: "elevenlabs: synchronous, the sound was only in the lost answer; another costs at most $0.03"};
