# mi.jq - what every provider definition starts with (mi-providers(5)).
# Defaults for the functions mi calls, which a definition overrides by
# defining the same name, and helpers to build outcomes and check
# requests.  Every function's input is an object holding .provider (the
# effective metadata), .request, and, depending on the function, .job,
# .response and .reference.

# The functions mi calls.
def validate: [];
def cost: 0;
def submit: error("\(.provider.id) has no submit");
def submitted: error("\(.provider.id) has no submitted");
def poll: error("\(.provider.id) is not polled");
def polled: error("\(.provider.id) is not polled");
def download:
  {method: "GET", url: .job.provider_state.result.url,
   auth: (.provider.download_auth // false)};
def lookup: null;

# Outcomes.
def processing($id; $state):
  {status: "processing", provider_job_id: $id, state: $state};
def progressing($progress): {status: "processing", progress: $progress};
def completed($result): {status: "completed", result: $result};
def failed($code; $message; $retryable):
  {status: "failed",
   error: {code: $code, message: $message, retryable: $retryable}};
def failed($message): failed("PROVIDER_ERROR"; $message; false);
def retry($message):
  {status: "retry",
   error: {code: "PROVIDER_UNAVAILABLE", message: $message,
           retryable: true}};

# Answers.
def ok: .response.status >= 200 and .response.status < 300;
def body_message:
  .response.body as $b
  | if ($b | type) == "object" then
      ([$b.message, $b.msg, ($b.error | objects | .message),
        ($b.error | strings), ($b.detail | objects | .message),
        ($b.detail | strings)]
       | map(select(. != null)) | .[0]) // ($b | tojson)
    elif ($b | type) == "string" then $b[0:300]
    else "" end
  | if type == "string" then . else tojson end;
# A 2xx answer that is not the JSON object expected: worth another try.
def json_answer: (.response.body | type) == "object";
# (Marked: to a create, such an answer makes its outcome unknown.)
def unreadable:
  retry("\(.provider.id): HTTP \(.response.status) with an answer that is not a JSON object: \(body_message)")
  + {unreadable: true};
# The usual reading of a non-2xx answer: 429 and 5xx are worth another
# try, a refused key is a configuration error, the rest is final.
def http_failure:
  .response.status as $s
  | "\(.provider.id): HTTP \($s): \(body_message)" as $m
  | if $s == 429 or $s >= 500 then retry($m)
    elif ($s == 401 or $s == 403) and
         (body_message | test("credit|balance|quota|billing"; "i")) then
      failed("PROVIDER_ERROR"; "\(.provider.id): out of credits: \(body_message)"; false)
    elif $s == 401 or $s == 403 then
      failed("CONFIG_ERROR";
        "\(.provider.id) refused the key in \(.provider.auth.env): HTTP \($s)";
        false)
    else failed("PROVIDER_ERROR"; $m; false) end;

# Checks of a request: each gives an array of messages, empty when fine.
def param($k): .request.params[$k];
def need_prompt($max):
  .request.prompt as $p
  | if ($p | type) != "string" or ($p | length) == 0 then
      ["a prompt is required"]
    elif ($p | length) > $max then ["the prompt is longer than \($max) characters"]
    else [] end;
def number_param($k; $lo; $hi):
  param($k) as $v
  | if $v == null then []
    elif ($v | type) != "number" or $v < $lo or $v > $hi then
      ["params.\($k) must be a number from \($lo) to \($hi)"]
    else [] end;
def int_param($k; $lo; $hi):
  param($k) as $v
  | if $v == null then []
    elif ($v | type) != "number" or $v != ($v | floor) or $v < $lo
         or $v > $hi then
      ["params.\($k) must be a whole number from \($lo) to \($hi)"]
    else [] end;
def enum_param($k; $allowed):
  param($k) as $v
  | if $v == null or ($allowed | any(. == $v)) then []
    else ["params.\($k) must be one of \($allowed | map(tostring) | join(", "))"]
    end;
def bool_param($k):
  param($k) as $v
  | if $v == null or ($v | type) == "boolean" then []
    else ["params.\($k) must be true or false"] end;

# An object without its null members.
def compact: with_entries(select(.value != null));
# The request's parameter k, or a default when it is absent or null
# (unlike jq's //, a false value is kept).
def p($k; $default):
  .request.params[$k] as $v | if $v == null then $default else $v end;
# Epoch milliseconds of an ISO 8601 time (seconds precision), or null.
def iso_ms: (sub("\\.[0-9]+"; "") | sub("\\+00:00$"; "Z") | fromdateiso8601 * 1000)? // null;

# Lost creates (mi-recover(1), mi-providers(5)).  lookup builds the
# request that searches the provider for a job whose create answer was
# lost (input .lookup.page, 1 first) and, given .response, reads it:
# processing with candidates (task ids, best first) and state when found,
# failed with code NOT_FOUND when surely absent (resume: where to poll
# from instead), unknown with next.page to read another page (next as a
# whole is that page's .lookup, a cursor in it kept); null when
# the provider cannot be asked.  lost_create says what to do when the
# lookup cannot settle it: {policy: "resend" (once) or "hold" (the job
# fails, left to an operator), reason}.
def lost_create:
  {policy: "resend",
   reason: "\(.provider.id) cannot be asked about a lost create"};

# Webhooks and remote cancel (mi-providers(5), WEBHOOKS AND CANCEL).
# webhooks: {scheme: "standard-webhooks"|"ed25519-jwks"|"hmac"|"none",
# secret_env?, jwks_url?, per_request?}, or null for none.
def webhooks: null;
# The submit request (input) asking for a webhook to $url.
def with_webhook($url): .;
# The provider's id of the job a delivery (.delivery) is about, or null.
def webhook_job: null;
# The outcome of a delivery, as polled's of an answer; {status: "poll"}
# asks for a poll now.  Where the scheme signs no content (hmac, none)
# only {status: "skip"} is heeded: a progress note, not worth a poll;
# anything else makes mi poll the job now.
def webhook: {status: "poll"};
# The request that cancels the job at the provider, or null.
def cancel: null;
# The answer to cancel: completed (accepted, with cost_usd when the
# provider says what it charges) or failed (refused, too late).
def cancelled:
  if ok then {status: "completed"}
  else failed("\(.provider.id): cancel refused: HTTP \(.response.status): \(body_message)") end;
