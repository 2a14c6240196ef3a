# meshy.jq - Meshy 6 (https://docs.meshy.ai): text to 3D as a preview,
# then a refine that textures it (PBR maps unless params.pbr is false);
# image to 3D from params.reference_image; multi-image to 3D from
# params.reference_images (1 to 4 views of one object).  Results are GLB;
# Meshy keeps them 3 days (expires_at, epoch milliseconds).

def provider: {
  id: "meshy",
  name: "Meshy",
  media_types: ["model_3d"],
  transport: "http",
  base_url: "https://api.meshy.ai",
  auth: {header: "Authorization", prefix: "Bearer ", env: "MESHY_API_KEY"},
  # "latest" is Meshy 6 (meshy-6); "meshy-5" stays available.
  model: "latest",
  poll_interval_ms: 10000,
  timeout_ms: 600000,
  concurrency: 2,
  result_ttl_s: 259200,
  # Credits per task (Meshy 6) and what a credit costs; multi-image is
  # priced as image to 3D.
  prices: {usd_per_credit: 0.02, preview: 20, refine: 10,
           image_textured: 30, image_untextured: 20}
};

def pbr: p("pbr"; true);
def refine: p("refine"; true);
def polycount: p("max_triangles"; 30000);
def prompt_of: .request.prompt // "";
def views: .request.params.reference_images // [];
def image_input: .request.params.reference_image != null or views != [];
def texture_prompt: if prompt_of == "" then null else prompt_of[0:600] end;

# Geometry options shared by every create.  Meshy 6 does not remesh by
# default; mi asks it to, so that target_polycount (max_triangles) holds.
def geometry:
  {ai_model: .provider.model, topology: "triangle",
   target_polycount: polycount, should_remesh: p("remesh"; true),
   symmetry_mode: .request.params.symmetry,
   pose_mode: .request.params.pose,
   model_type: (if .request.params.lowpoly == true then "lowpoly" else null end)};

def validate:
  (if image_input then [] else need_prompt(600) end)
  + int_param("max_triangles"; 100; 50000)
  + bool_param("pbr") + bool_param("refine") + bool_param("remesh")
  + bool_param("lowpoly") + bool_param("remove_lighting")
  + enum_param("symmetry"; ["off", "auto", "on"])
  + enum_param("pose"; ["a-pose", "t-pose", ""])
  + (if (views | type) != "array" then ["params.reference_images must be an array"]
     elif (views | length) > 4 then ["params.reference_images takes 1 to 4 views"]
     elif views != [] and .request.params.reference_image != null then
       ["give params.reference_image or params.reference_images, not both"]
     else [] end);

def cost:
  .provider.prices as $p
  | (if image_input then
       (if refine then $p.image_textured else $p.image_untextured end)
     else $p.preview + (if refine then $p.refine else 0 end) end)
    * $p.usd_per_credit;

def image_url($r): $r.url // "data:\($r.mime_type);base64,\($r.data)";

def submit:
  if (.references.images // []) != [] then
    {method: "POST", path: "/openapi/v1/multi-image-to-3d",
     json: ({image_urls: [.references.images[] | image_url(.)],
             should_texture: refine, enable_pbr: (refine and pbr),
             texture_prompt: texture_prompt} + geometry | compact)}
  elif .reference then
    {method: "POST", path: "/openapi/v1/image-to-3d",
     json: ({image_url: image_url(.reference),
             should_texture: refine, enable_pbr: (refine and pbr),
             texture_prompt: texture_prompt} + geometry | compact)}
  else
    {method: "POST", path: "/openapi/v2/text-to-3d",
     json: ({mode: "preview", prompt: prompt_of} + geometry | compact)}
  end;

# The answer to a create: the preview, the refine or the image-to-3d.
def submitted:
  if ok | not then http_failure
  elif json_answer | not then unreadable
  elif (.response.body.result | type) != "string" then
    failed("meshy: the create's answer has no task id")
  elif .job.provider_state.stage == "refine" then
    processing(.response.body.result; {refine_task_id: .response.body.result})
  else
    processing(.response.body.result;
      {stage: (if (.references.images // []) != [] then "multi"
               elif .reference then "image" else "preview" end)})
  end;

def task_path:
  if .job.provider_state.stage == "image" then "/openapi/v1/image-to-3d"
  elif .job.provider_state.stage == "multi" then "/openapi/v1/multi-image-to-3d"
  else "/openapi/v2/text-to-3d" end;

def poll: {method: "GET", path: "\(task_path)/\(.job.provider_job_id)"};

# Progress over both tasks when a refine follows the preview.
def overall($t):
  if .job.provider_state.stage == "preview" and refine then ($t.progress // 0) / 2
  elif .job.provider_state.stage == "refine" then 50 + ($t.progress // 0) / 2
  else $t.progress // 0 end | floor;

def polled:
  .response.body as $t
  | if ok | not then http_failure
    elif json_answer | not then unreadable
    elif $t.status == "SUCCEEDED" then
      if .job.provider_state.stage == "preview" and refine then
        {status: "processing", progress: 50,
         state: {stage: "refine", preview_task_id: $t.id,
                 preview_credits: ($t.consumed_credits // .provider.prices.preview)},
         create: {method: "POST", path: "/openapi/v2/text-to-3d",
                  json: ({mode: "refine", preview_task_id: $t.id,
                          enable_pbr: pbr, ai_model: .provider.model,
                          remove_lighting: .request.params.remove_lighting,
                          texture_prompt: texture_prompt}
                         | compact)}}
      elif ($t.model_urls.glb // "") == "" then
        failed("meshy: the task succeeded without a GLB")
      else
        completed({url: $t.model_urls.glb, ext: "glb",
                   mime_type: "model/gltf-binary",
                   expires_at: (if ($t.expires_at // 0) > 0 then $t.expires_at
                                else null end),
                   metadata: {task_id: $t.id, type: $t.type,
                              preview_task_id: .job.provider_state.preview_task_id,
                              thumbnail_url: $t.thumbnail_url,
                              texture_urls: $t.texture_urls,
                              model_urls: $t.model_urls,
                              consumed_credits: $t.consumed_credits}})
        + (if $t.consumed_credits then
             {cost_usd: (($t.consumed_credits
                          + (.job.provider_state.preview_credits // 0))
                         * .provider.prices.usd_per_credit)}
           else {} end)
      end
    elif $t.status == "FAILED" or $t.status == "CANCELED" then
      ($t.task_error.message // "") as $m
      # Meshy refunds failed tasks; a busy server is worth another task.
      | failed("PROVIDER_ERROR"; "meshy: task \($t.status | ascii_downcase): \($m)";
               ($m | test("busy|try again"; "i")))
        + {cost_usd: 0}
    else progressing(overall($t)) end;

# Lost creates (mi-recover(1)).  Meshy lists its tasks, newest first: a
# create whose answer was lost is the task of the job's kind and prompt
# made since the job started (a minute of clock skew allowed); the pages
# end where the tasks are older.  A lost refine that never arrived is
# resumed at its preview, which makes the refine again.
def lookup_kind:
  if .job.provider_state.stage == "refine" then "text-to-3d-refine"
  elif .request.params.reference_image then "image-to-3d"
  else "text-to-3d-preview" end;
def lookup:
  ((.job.started_ms // 0) - 60000) as $since
  | (.lookup.page // 1) as $page
  | lookup_kind as $kind
  | (if $kind == "image-to-3d" then prompt_of[0:600] else prompt_of end) as $prompt
  | if .response == null then
      # An image-to-3d without a prompt cannot be told from another.
      if $kind == "image-to-3d" and $prompt == "" then null
      else {method: "GET",
            path: (if $kind == "image-to-3d" then "/openapi/v1/image-to-3d"
                   else "/openapi/v2/text-to-3d" end),
            query: {page_num: $page, page_size: 50, sort_by: "-created_at"}}
      end
    elif ok | not then http_failure
    elif (.response.body | type) != "array" then unreadable
    else
      .response.body as $tasks
      | [$tasks[] | objects | select(.type == $kind)
         | select((.created_at // 0) >= $since)
         | select((if $kind == "image-to-3d" then .texture_prompt else .prompt end
                   // "") == $prompt)]
        as $m
      | if ($m | length) > 0 then
          {status: "processing",
           candidates: ($m | sort_by(.created_at) | map(.id)),
           state: (if $kind == "text-to-3d-refine" then {}
                   elif $kind == "image-to-3d" then {stage: "image"}
                   else {stage: "preview"} end)}
        elif ($tasks | length) >= 50 and
             ([$tasks[] | objects | .created_at // 0] | min) >= $since then
          {status: "unknown", next: {page: ($page + 1)}}
        else
          failed("NOT_FOUND"; "meshy: no \($kind) task of this prompt since the job started"; false)
          + (if $kind == "text-to-3d-refine" and .job.provider_state.preview_task_id then
               {resume: {provider_job_id: .job.provider_state.preview_task_id,
                         state: {stage: "preview"}}}
             else {} end)
        end
    end;
def lost_create:
  {policy: "resend",
   reason: "meshy: the task list did not settle the create; one more task costs at most $0.60"};

# Webhooks and cancel (mi-providers(5)).  Meshy's webhooks are set per
# account, unsigned, and sent at every status update: one that says the
# task ended makes mi poll it at once (a progress update does not).
def webhooks: {scheme: "none", per_request: false};
def webhook_job: .delivery.body.id;
def webhook:
  (.delivery.body | if type == "object" then .status else null end) as $s
  | if $s == "PENDING" or $s == "IN_PROGRESS" then {status: "skip"}
    else {status: "poll"} end;
def cancel:
  if .job.provider_job_id then
    {method: "DELETE", path: "\(task_path)/\(.job.provider_job_id)"}
  else null end;
# A pending task is deleted and refunded; a running one is refused.
def cancelled:
  if ok then {status: "completed", cost_usd: 0}
  else failed("meshy: cancel refused: HTTP \(.response.status): \(body_message)")
  end;
