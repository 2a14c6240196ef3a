/*
 * probe_glb.c - facts of a glTF 2.0 model from its JSON (the JSON chunk
 * of a GLB, or a .gltf file): triangles, meshes, materials and the PBR
 * maps of each, the sizes of its textures (embedded ones read from the
 * binary chunk's header bytes), and the bounding box of the default
 * scene in world space.  Only the JSON is parsed (at most 64 MiB); no
 * vertex data is read, so a 100 MB model costs the same as a small one.
 * Every index into the document is checked before use.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "probe.h"
#include "banned.h"

#define MAX_JSON (64LL << 20)
#define MAX_DEPTH 64

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[1] << 8 | p[0];
}

/* doc[key][i] as an object, or null. */
static jv
item(jv doc, const char *key, jv idx)
{
	jv arr = jv_object_get(jv_copy(doc), jv_string(key)), v;
	double d;

	if (jv_get_kind(arr) != JV_KIND_ARRAY ||
	    jv_get_kind(idx) != JV_KIND_NUMBER) {
		jv_free(arr);
		jv_free(idx);
		return jv_null();
	}
	d = jv_number_value(idx);
	jv_free(idx);
	if (d < 0 || d != floor(d) || d >= jv_array_length(jv_copy(arr))) {
		jv_free(arr);
		return jv_null();
	}
	v = jv_array_get(arr, (int)d);
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_free(v);
		return jv_null();
	}
	return v;
}

static int
count(jv doc, const char *key)
{
	jv a = jv_object_get(jv_copy(doc), jv_string(key));
	int n =
	    jv_get_kind(a) == JV_KIND_ARRAY ? jv_array_length(jv_copy(a)) : 0;

	jv_free(a);
	return n;
}

static double
num(jv o, const char *key, double dflt)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : dflt;

	jv_free(v);
	return d;
}

/* o[a][b] for o an object; null when o[a] is not an object. */
static jv
get2(jv o, const char *a, const char *b)
{
	jv v = jv_object_get(jv_copy(o), jv_string(a));

	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_free(v);
		return jv_null();
	}
	return jv_object_get(v, jv_string(b));
}

static int
has_array(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	int k = jv_get_kind(v) == JV_KIND_ARRAY;

	jv_free(v);
	return k;
}

/* Triangles drawn by one primitive. */
static double
prim_triangles(jv doc, jv prim)
{
	double mode = num(prim, "mode", 4), n;
	jv ix = jv_object_get(jv_copy(prim), jv_string("indices")), acc;

	if (jv_get_kind(ix) == JV_KIND_NUMBER)
		acc = item(doc, "accessors", ix);
	else {
		jv_free(ix);
		acc = item(doc, "accessors",
		    get2(prim, "attributes", "POSITION"));
	}
	n = jv_get_kind(acc) == JV_KIND_OBJECT ? num(acc, "count", 0) : 0;
	jv_free(acc);
	if (n < 0)
		n = 0;
	if (mode == 4)
		return floor(n / 3);
	if (mode == 5 || mode == 6)
		return n >= 3 ? n - 2 : 0;
	return 0;
}

/* 4x4 column-major matrices. */
static void
mat_mul(const double *a, const double *b, double *out)
{
	double r[16];
	int i, j, k;

	for (i = 0; i < 4; i++)
		for (j = 0; j < 4; j++) {
			r[j * 4 + i] = 0;
			for (k = 0; k < 4; k++)
				r[j * 4 + i] += a[k * 4 + i] * b[j * 4 + k];
		}
	memcpy(out, r, sizeof(r));
}

static void
num_array(jv o, const char *key, double *out, int n)
{
	jv a = jv_object_get(jv_copy(o), jv_string(key));
	int i;

	if (jv_get_kind(a) == JV_KIND_ARRAY && jv_array_length(jv_copy(a)) == n)
		for (i = 0; i < n; i++) {
			jv v = jv_array_get(jv_copy(a), i);

			if (jv_get_kind(v) == JV_KIND_NUMBER &&
			    isfinite(jv_number_value(v)))
				out[i] = jv_number_value(v);
			jv_free(v);
		}
	jv_free(a);
}

static void
node_matrix(jv node, double *m)
{
	double t[3] = { 0, 0, 0 }, q[4] = { 0, 0, 0, 1 }, s[3] = { 1, 1, 1 };
	double x, y, z, w;

	memset(m, 0, 16 * sizeof(*m));
	m[0] = m[5] = m[10] = m[15] = 1;
	if (has_array(node, "matrix")) {
		num_array(node, "matrix", m, 16);
		return;
	}
	num_array(node, "translation", t, 3);
	num_array(node, "rotation", q, 4);
	num_array(node, "scale", s, 3);
	x = q[0], y = q[1], z = q[2], w = q[3];
	m[0] = (1 - 2 * (y * y + z * z)) * s[0];
	m[1] = (2 * (x * y + z * w)) * s[0];
	m[2] = (2 * (x * z - y * w)) * s[0];
	m[4] = (2 * (x * y - z * w)) * s[1];
	m[5] = (1 - 2 * (x * x + z * z)) * s[1];
	m[6] = (2 * (y * z + x * w)) * s[1];
	m[8] = (2 * (x * z + y * w)) * s[2];
	m[9] = (2 * (y * z - x * w)) * s[2];
	m[10] = (1 - 2 * (x * x + y * y)) * s[2];
	m[12] = t[0], m[13] = t[1], m[14] = t[2];
}

struct bbox {
	double lo[3], hi[3];
	int any;
};

/* The corners of each primitive's POSITION min/max, transformed by m. */
static void
mesh_bbox(jv doc, jv mesh, const double *m, struct bbox *b)
{
	jv prims = jv_object_get(jv_copy(mesh), jv_string("primitives"));
	int i, n, c, k;

	n = jv_get_kind(prims) == JV_KIND_ARRAY
	    ? jv_array_length(jv_copy(prims))
	    : 0;
	for (i = 0; i < n; i++) {
		jv prim = jv_array_get(jv_copy(prims), i);
		jv acc = jv_get_kind(prim) == JV_KIND_OBJECT
		    ? item(doc, "accessors",
			  get2(prim, "attributes", "POSITION"))
		    : jv_null();
		double lo[3] = { NAN, NAN, NAN }, hi[3] = { NAN, NAN, NAN };

		jv_free(prim);
		if (jv_get_kind(acc) == JV_KIND_OBJECT) {
			num_array(acc, "min", lo, 3);
			num_array(acc, "max", hi, 3);
		}
		jv_free(acc);
		if (isnan(lo[0]) || isnan(lo[1]) || isnan(lo[2]) ||
		    isnan(hi[0]) || isnan(hi[1]) || isnan(hi[2]))
			continue;
		for (c = 0; c < 8; c++) {
			double p[3] = { c & 1 ? hi[0] : lo[0],
				c & 2 ? hi[1] : lo[1], c & 4 ? hi[2] : lo[2] };

			for (k = 0; k < 3; k++) {
				double v = m[k] * p[0] + m[4 + k] * p[1] +
				    m[8 + k] * p[2] + m[12 + k];

				if (!b->any || v < b->lo[k])
					b->lo[k] = v;
				if (!b->any || v > b->hi[k])
					b->hi[k] = v;
			}
			b->any = 1;
		}
	}
	jv_free(prims);
}

static void
walk(jv doc, jv idx, const double *parent, int depth, struct bbox *b)
{
	jv node = item(doc, "nodes", idx), kids;
	double m[16], w[16];
	int i, n;

	if (jv_get_kind(node) != JV_KIND_OBJECT || depth > MAX_DEPTH) {
		jv_free(node);
		return;
	}
	node_matrix(node, m);
	mat_mul(parent, m, w);
	{
		jv mesh = item(doc, "meshes",
		    jv_object_get(jv_copy(node), jv_string("mesh")));

		if (jv_get_kind(mesh) == JV_KIND_OBJECT)
			mesh_bbox(doc, mesh, w, b);
		jv_free(mesh);
	}
	kids = jv_object_get(node, jv_string("children"));
	n = jv_get_kind(kids) == JV_KIND_ARRAY ? jv_array_length(jv_copy(kids))
					       : 0;
	for (i = 0; i < n; i++)
		walk(doc, jv_array_get(jv_copy(kids), i), w, depth + 1, b);
	jv_free(kids);
}

static jv
bbox_of(jv doc)
{
	static const double id[16] = { 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0,
		0, 1 };
	struct bbox b;
	jv scene, nodes, lo = jv_array(), hi = jv_array();
	int i, n;

	memset(&b, 0, sizeof(b));
	scene = item(doc, "scenes", jv_number(num(doc, "scene", 0)));
	nodes = jv_get_kind(scene) == JV_KIND_OBJECT
	    ? jv_object_get(scene, jv_string("nodes"))
	    : (jv_free(scene), jv_null());
	n = jv_get_kind(nodes) == JV_KIND_ARRAY
	    ? jv_array_length(jv_copy(nodes))
	    : 0;
	for (i = 0; i < n; i++)
		walk(doc, jv_array_get(jv_copy(nodes), i), id, 0, &b);
	jv_free(nodes);
	if (!b.any) {
		jv_free(lo);
		jv_free(hi);
		return jv_null();
	}
	for (i = 0; i < 3; i++) {
		lo = jv_array_append(lo, jv_number(b.lo[i]));
		hi = jv_array_append(hi, jv_number(b.hi[i]));
	}
	return jv_object_set(jv_object_set(jv_object(), jv_string("min"), lo),
	    jv_string("max"), hi);
}

/* The size of image i: from the binary chunk (bufferView), else only
 * its type. */
static jv
image_facts(jv doc, jv img, int fd, long long bin_off, long long bin_len)
{
	jv view = item(doc, "bufferViews",
	    jv_object_get(jv_copy(img), jv_string("bufferView")));
	const char *mt = NULL, *ext = NULL;
	jv mime = jv_object_get(jv_copy(img), jv_string("mimeType")), out;

	if (jv_get_kind(mime) == JV_KIND_STRING)
		mt = jv_string_value(mime);
	if (mt && strcmp(mt, "image/png") == 0)
		ext = "png";
	else if (mt && strcmp(mt, "image/jpeg") == 0)
		ext = "jpg";
	else if (mt && strcmp(mt, "image/webp") == 0)
		ext = "webp";
	else if (mt && strcmp(mt, "image/ktx2") == 0)
		ext = "ktx2";
	if (jv_get_kind(view) == JV_KIND_OBJECT && ext && bin_off >= 0 &&
	    num(view, "buffer", 0) == 0) {
		double o = num(view, "byteOffset", 0);
		double l = num(view, "byteLength", 0);

		if (o >= 0 && l > 0 && o + l <= (double)bin_len) {
			out = mi_probe_image_fd(fd, bin_off + (long long)o,
			    (long long)l, ext);
			jv_free(view);
			out = jv_object_delete(out, jv_string("kind"));
			return jv_object_set(out, jv_string("mime_type"), mime);
		}
	}
	jv_free(view);
	out = jv_object();
	if (jv_get_kind(mime) == JV_KIND_STRING)
		out = jv_object_set(out, jv_string("mime_type"), mime);
	else
		jv_free(mime);
	return out;
}

static jv
texinfo(jv doc, jv ref, jv images)
{
	jv tex, src;
	double i;

	if (jv_get_kind(ref) != JV_KIND_OBJECT) {
		jv_free(ref);
		return jv_null();
	}
	tex = item(doc, "textures", jv_object_get(ref, jv_string("index")));
	if (jv_get_kind(tex) != JV_KIND_OBJECT) {
		jv_free(tex);
		return jv_true(); /* named, but broken: still a map */
	}
	src = jv_object_get(jv_copy(tex), jv_string("source"));
	if (jv_get_kind(src) != JV_KIND_NUMBER) {
		/* KHR_texture_basisu, EXT_texture_webp */
		jv ext = jv_object_get(jv_copy(tex), jv_string("extensions"));

		jv_free(src);
		src = jv_null();
		if (jv_get_kind(ext) == JV_KIND_OBJECT) {
			jv_object_foreach(ext, k, v)
			{
				jv s = jv_get_kind(v) == JV_KIND_OBJECT
				    ? jv_object_get(v, jv_string("source"))
				    : (jv_free(v), jv_null());

				jv_free(k);
				if (jv_get_kind(s) == JV_KIND_NUMBER) {
					jv_free(src);
					src = s;
				} else
					jv_free(s);
			}
		}
		jv_free(ext);
	}
	jv_free(tex);
	if (jv_get_kind(src) != JV_KIND_NUMBER) {
		jv_free(src);
		return jv_true();
	}
	i = jv_number_value(src);
	jv_free(src);
	if (i < 0 || i >= jv_array_length(jv_copy(images)) || i != floor(i))
		return jv_true();
	return jv_array_get(jv_copy(images), (int)i);
}

jv
mi_probe_gltf_fd(int fd, long long size, int binary)
{
	jv out = jv_object(), doc, images, mats, meshes;
	jv pbr_all = jv_null(), matlist;
	long long json_off = 0, json_len = size, bin_off = -1, bin_len = 0;
	unsigned char h[20];
	char *text;
	double tris = 0;
	int i, n;
	static const char *const maps[5] = { "base_color", "metallic_roughness",
		"normal", "occlusion", "emissive" };
	int all[5] = { 1, 1, 1, 1, 1 };

	out = jv_object_set(out, jv_string("kind"), jv_string("model"));
	out = jv_object_set(out, jv_string("format"),
	    jv_string(binary ? "glb" : "gltf"));
	if (binary) {
		if (size < 20 || pread(fd, h, 20, 0) != 20 ||
		    memcmp(h, "glTF", 4) != 0 || le32(h + 4) != 2 ||
		    memcmp(h + 16, "JSON", 4) != 0)
			return jv_object_set(out, jv_string("error"),
			    jv_string("no GLB 2.0 header"));
		json_off = 20;
		json_len = le32(h + 12);
		if (json_len > size - 20)
			return jv_object_set(out, jv_string("error"),
			    jv_string("the JSON chunk runs past the file"));
		if (json_off + json_len + 8 <= size &&
		    pread(fd, h, 8, (off_t)(json_off + json_len)) == 8 &&
		    memcmp(h + 4, "BIN\0", 4) == 0) {
			bin_off = json_off + json_len + 8;
			bin_len = le32(h);
			if (bin_len > size - bin_off)
				bin_len = size - bin_off;
		}
	}
	if (json_len > MAX_JSON)
		return jv_object_set(out, jv_string("error"),
		    jv_string("the glTF JSON is larger than 64 MiB"));
	if ((text = malloc((size_t)json_len + 1)) == NULL)
		return jv_object_set(out, jv_string("error"),
		    jv_string("out of memory"));
	if (pread(fd, text, (size_t)json_len, (off_t)json_off) !=
	    (ssize_t)json_len) {
		free(text);
		return jv_object_set(out, jv_string("error"),
		    jv_string("unreadable glTF JSON"));
	}
	doc = jv_parse_sized(text, (int)json_len);
	free(text);
	if (jv_get_kind(doc) != JV_KIND_OBJECT) {
		jv_free(doc);
		return jv_object_set(out, jv_string("error"),
		    jv_string("the glTF JSON is not an object"));
	}
	/* Made here: the refusals above return before them (no leak). */
	images = jv_array();
	matlist = jv_array();
	/* Images first: materials name their sizes. */
	n = count(doc, "images");
	for (i = 0; i < n && i < 4096; i++) {
		jv img = item(doc, "images", jv_number(i));

		if (jv_get_kind(img) == JV_KIND_OBJECT) {
			images = jv_array_append(images,
			    image_facts(doc, img, fd, bin_off, bin_len));
			jv_free(img);
		} else
			images = jv_array_append(images, img);
	}
	meshes = jv_object_get(jv_copy(doc), jv_string("meshes"));
	n = jv_get_kind(meshes) == JV_KIND_ARRAY
	    ? jv_array_length(jv_copy(meshes))
	    : 0;
	for (i = 0; i < n; i++) {
		jv m = jv_array_get(jv_copy(meshes), i);
		jv prims = jv_get_kind(m) == JV_KIND_OBJECT
		    ? jv_object_get(m, jv_string("primitives"))
		    : (jv_free(m), jv_null());
		int k,
		    np = jv_get_kind(prims) == JV_KIND_ARRAY
		    ? jv_array_length(jv_copy(prims))
		    : 0;

		for (k = 0; k < np; k++) {
			jv p = jv_array_get(jv_copy(prims), k);

			if (jv_get_kind(p) == JV_KIND_OBJECT)
				tris += prim_triangles(doc, p);
			jv_free(p);
		}
		jv_free(prims);
	}
	jv_free(meshes);
	out = jv_object_set(out, jv_string("triangles"), jv_number(tris));
	out = jv_object_set(out, jv_string("meshes"), jv_number(n));
	mats = jv_object_get(jv_copy(doc), jv_string("materials"));
	n = jv_get_kind(mats) == JV_KIND_ARRAY ? jv_array_length(jv_copy(mats))
					       : 0;
	out = jv_object_set(out, jv_string("materials"), jv_number(n));
	for (i = 0; i < n; i++) {
		jv m = jv_array_get(jv_copy(mats), i), pm, refs[5], e, nm;
		int k;

		if (jv_get_kind(m) != JV_KIND_OBJECT) {
			jv_free(m);
			m = jv_object();
		}
		pm = jv_object_get(jv_copy(m),
		    jv_string("pbrMetallicRoughness"));
		if (jv_get_kind(pm) != JV_KIND_OBJECT) {
			jv_free(pm);
			pm = jv_object();
		}
		refs[0] =
		    jv_object_get(jv_copy(pm), jv_string("baseColorTexture"));
		refs[1] =
		    jv_object_get(pm, jv_string("metallicRoughnessTexture"));
		refs[2] = jv_object_get(jv_copy(m), jv_string("normalTexture"));
		refs[3] =
		    jv_object_get(jv_copy(m), jv_string("occlusionTexture"));
		refs[4] =
		    jv_object_get(jv_copy(m), jv_string("emissiveTexture"));
		e = jv_object();
		nm = jv_object_get(m, jv_string("name"));
		if (jv_get_kind(nm) == JV_KIND_STRING)
			e = jv_object_set(e, jv_string("name"), nm);
		else
			jv_free(nm);
		for (k = 0; k < 5; k++) {
			jv t = texinfo(doc, refs[k], images);

			if (jv_get_kind(t) == JV_KIND_NULL) {
				all[k] = 0;
				jv_free(t);
				continue;
			}
			if (jv_get_kind(t) != JV_KIND_OBJECT) {
				jv_free(t);
				t = jv_object();
			}
			e = jv_object_set(e, jv_string(maps[k]), t);
		}
		matlist = jv_array_append(matlist, e);
	}
	jv_free(mats);
	pbr_all = jv_object();
	for (i = 0; i < 5; i++)
		pbr_all = jv_object_set(pbr_all, jv_string(maps[i]),
		    n > 0 && all[i] ? jv_true() : jv_false());
	out = jv_object_set(out, jv_string("pbr"), pbr_all);
	out = jv_object_set(out, jv_string("material_maps"), matlist);
	out = jv_object_set(out, jv_string("textures"), images);
	{
		jv bb = bbox_of(doc);

		if (jv_get_kind(bb) == JV_KIND_OBJECT)
			out = jv_object_set(out, jv_string("bbox"), bb);
		else
			jv_free(bb);
	}
	{
		jv used =
		    jv_object_get(jv_copy(doc), jv_string("extensionsUsed"));

		if (jv_get_kind(used) == JV_KIND_ARRAY)
			out = jv_object_set(out, jv_string("extensions"), used);
		else
			jv_free(used);
	}
	jv_free(doc);
	return out;
}
