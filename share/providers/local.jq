# local.jq - the built-in generators: every media type, made on this
# machine, at no cost.  The files are real (PNG, Radiance HDR, GLB, WAV,
# MP4) and the same request always gives the same bytes.

def provider: {
  id: "local",
  name: "mi built-in generators",
  media_types: ["video", "audio_sfx", "audio_bgm", "model_3d", "image",
                "texture", "environment_map"],
  transport: "local",
  # One limit for the tenant across media types: it is this machine's CPU.
  concurrency: 2,
  poll_interval_ms: 1000,
  timeout_ms: 600000,
  prices: {}
};

def validate:
  .request.media_type as $m
  | if $m == "video" then
      number_param("duration_sec"; 4; 15)
      + enum_param("resolution"; ["480p", "720p", "1080p"])
      + enum_param("aspect_ratio"; ["16:9", "9:16", "1:1"])
      + bool_param("loop")
    elif $m == "audio_sfx" then
      number_param("duration_sec"; 0.5; 5)
      + enum_param("sfx_type"; ["click", "spin", "flip", "scratch", "match",
                                "win", "lose", "countdown", "reveal",
                                "confetti"])
    elif $m == "audio_bgm" then
      number_param("duration_sec"; 30; 120)
      + enum_param("genre"; ["electronic", "orchestral", "rock", "jazz",
                             "ambient", "pop", "hip-hop"])
      + bool_param("instrumental")
    elif $m == "model_3d" then
      int_param("max_triangles"; 1; 50000) + bool_param("pbr")
    elif $m == "image" or $m == "texture" then
      int_param("width"; 512; 4096) + int_param("height"; 512; 4096)
      + bool_param("seamless")
    elif $m == "environment_map" then
      int_param("width"; 64; 8192) + enum_param("format"; ["hdr"])
    else ["local makes no \($m)"] end;

def cost: 0;
