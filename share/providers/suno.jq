# suno.jq - Suno music through sunoapi.org: a description (genre, mood,
# length) in, two tracks out, of which the first is kept.  Errors come in
# the body's "code", often with HTTP 200; "instrumental" is Suno's
# no-vocals switch.  Files are kept 15 days.

def provider: {
  id: "suno",
  name: "Suno (sunoapi.org)",
  media_types: ["audio_bgm"],
  transport: "http",
  base_url: "https://api.sunoapi.org",
  auth: {header: "Authorization", prefix: "Bearer ", env: "SUNO_API_KEY"},
  model: "V5_5",
  # sunoapi.org expects a callback URL in its examples (kie.ai, the same
  # API, refuses creates without one since June 2026); set one to get
  # its calls (mi polls either way).
  callback_url: null,
  # Deviation from FR-017 (BGM 5 s / 180 s), see mi-providers(5): a
  # generation takes 2 to 3 minutes before the complete stage, and
  # longer when Suno is busy.
  poll_interval_ms: 5000,
  timeout_ms: 300000,
  concurrency: 2,
  result_ttl_s: 1296000,
  # A running task's answers carry links signed afresh each time: only
  # whether a link is there tells anything while it runs.
  rotating_urls: true,
  prices: {per_generation: 0.06}
};

def description:
  [.request.prompt // "",
   (if .request.params.genre then "Genre: \(.request.params.genre)." else empty end),
   (if .request.params.duration_sec then
      "About \(.request.params.duration_sec) seconds long." else empty end),
   (if .request.params.loop then "Loops seamlessly." else empty end)]
  | map(select(. != "")) | join(" ");

def validate:
  need_prompt(400)
  + (if (description | length) > 500 then
       ["the prompt and genre are longer than 500 characters"] else [] end)
  + number_param("duration_sec"; 30; 120)
  + enum_param("genre"; ["electronic", "orchestral", "rock", "jazz",
                         "ambient", "pop", "hip-hop"])
  + bool_param("instrumental");

def cost: .provider.prices.per_generation;

def submit:
  {method: "POST", path: "/api/v1/generate",
   json: ({customMode: false,
           instrumental: p("instrumental"; true),
           model: .provider.model,
           prompt: description,
           callBackUrl: .provider.callback_url} | compact)};

# The body's code: 200 is success; 405, 430 (call frequency), 455
# (maintenance) and 5xx pass; 429 means no credits left.
def suno_failure:
  .response.body as $b
  | "suno: \($b.msg // "error") (code \($b.code))" as $m
  | if $b.code == 401 then
      failed("CONFIG_ERROR"; "suno refused the key in \(.provider.auth.env)"; false)
    elif [405, 430, 455, 500, 502, 503] | index([$b.code]) then retry($m)
    elif $b.code == 429 then failed("PROVIDER_ERROR"; "suno: out of credits: \($b.msg)"; false)
    else failed("PROVIDER_ERROR"; $m; false) end;

def submitted:
  if ok | not then http_failure
  elif json_answer | not then unreadable
  elif .response.body.code != 200 then suno_failure
  elif (.response.body.data.taskId | type) != "string" then
    failed("suno: the answer has no taskId")
  else processing(.response.body.data.taskId; {}) end;

def poll:
  {method: "GET", path: "/api/v1/generate/record-info",
   query: {taskId: .job.provider_job_id}};

def clips:
  (.response.body.data.response // {})
  | (if type == "string" then (fromjson? // {}) else . end)
  | .sunoData // [];

def polled:
  (if json_answer then .response.body.data else null end) as $d
  | if ok | not then http_failure
    elif json_answer | not then unreadable
    elif .response.body.code != 200 then suno_failure
    elif $d.status == "SUCCESS" or
         ($d.status == "CALLBACK_EXCEPTION" and
          (clips | map(select((.audioUrl // "") != "")) | length) > 0) then
      (clips | map(select((.audioUrl // "") != ""))) as $c
      | if ($c | length) == 0 then failed("suno: finished without audio")
        else
          completed({url: $c[0].audioUrl, ext: "mp3", mime_type: "audio/mpeg",
                     metadata: {task_id: $d.taskId, clip_id: $c[0].id,
                                title: $c[0].title, tags: $c[0].tags,
                                duration: $c[0].duration,
                                model_name: $c[0].modelName,
                                image_url: $c[0].imageUrl,
                                other_clips: [$c[1:][] | {id, audioUrl}]}})
        end
    elif [$d.status] | inside(["CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED",
                               "SENSITIVE_WORD_ERROR", "CALLBACK_EXCEPTION"]) then
      failed("PROVIDER_ERROR";
             "suno: \($d.status): \($d.errorMessage // "no message") (code \($d.errorCode))";
             false)
    else
      progressing({PENDING: 10, TEXT_SUCCESS: 40, FIRST_SUCCESS: 75}[$d.status] // 5)
    end;

# Lost creates (mi-recover(1)): sunoapi.org finds a task by its taskId
# only (record-info) and lists none; a generation costs a few cents.
def lost_create:
  {policy: "resend",
   reason: "suno: sunoapi.org cannot list tasks; another generation costs about $0.06"};

# Webhooks (mi-providers(5)).  The callback kie.ai signs is an HMAC of
# the task id and timestamp only: the body is not signed, so a delivery
# makes mi poll the task at once, unless it is the lyrics' or the first
# track's (a job ends at SUCCESS only).  No cancel endpoint.
def webhooks: {scheme: "hmac", per_request: true};
def with_webhook($url): .json.callBackUrl = $url;
def webhook_job:
  .delivery.body | objects | (.data.task_id // .data.taskId // .taskId)
  | strings;
def webhook:
  (.delivery.body | if type == "object" then .data else null end
   | if type == "object" then .callbackType else null end) as $t
  | if $t == "text" or $t == "first" then {status: "skip"}
    else {status: "poll"} end;
