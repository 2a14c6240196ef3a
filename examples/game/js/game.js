// The game: reads bundle.json (which assets the bundle holds, by kind and
// artifact type) and game_config.json (rules, colours, copy), builds the
// scene from the model, the environment map and a texture, readies the
// music and the spin sound, and spins the wheel on a click.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { HDRLoader } from 'three/addons/loaders/HDRLoader.js';

const $ = (id) => document.getElementById(id);

async function json(url) {
	const r = await fetch(url);
	if (!r.ok)
		throw new Error(`${url}: HTTP ${r.status}`);
	return r.json();
}

// The bundle path of the first artifact whose type contains one of
// words (in that order), else the first of kind ending in suffix.
function pick(manifest, words, kind, suffix) {
	const arts = (manifest.metadata && manifest.metadata.artifacts) || [];
	const fits = (p) => !suffix || p.endsWith(suffix);
	for (const w of words) {
		const a = arts.find((x) => x.type.includes(w) && fits(x.path));
		if (a)
			return a.path;
	}
	const list = (manifest.assets && manifest.assets[kind]) || [];
	return list.find(fits) || null;
}

function ready(audio, src) {
	return new Promise((resolve, reject) => {
		if (!src)
			return resolve(false);
		audio.addEventListener('canplaythrough', () => resolve(true),
		    { once: true });
		audio.addEventListener('error', () =>
		    reject(new Error(`${src}: audio failed`)), { once: true });
		audio.src = src;
		audio.load();
	});
}

function applyConfig(cfg) {
	const colours = (cfg.visuals && cfg.visuals.colors) || {};
	for (const [k, v] of Object.entries(colours))
		document.documentElement.style.setProperty(`--${k}`, v);
	const copy = cfg.copy || {};
	if (copy.title)
		$('title').textContent = copy.title;
	if (copy.instructions)
		$('instructions').textContent = copy.instructions;
}

async function main() {
	const [manifest, cfg] = await Promise.all([json('./bundle.json'),
	    json('./game_config.json').catch(() => ({}))]);
	applyConfig(cfg);

	const renderer = new THREE.WebGLRenderer({ antialias: true,
	    preserveDrawingBuffer: true });
	renderer.setSize(innerWidth, innerHeight);
	renderer.toneMapping = THREE.ACESFilmicToneMapping;
	document.body.prepend(renderer.domElement);
	const scene = new THREE.Scene();
	const camera = new THREE.PerspectiveCamera(45, innerWidth / innerHeight,
	    0.01, 1000);

	const modelPath = pick(manifest, ['wheel', 'model'], 'models', '.glb');
	const hdrPath = pick(manifest, ['environment'], 'images', '.hdr');
	const texPath = pick(manifest, ['floor', 'texture'], 'images', '.png');
	const musicPath = pick(manifest, ['bgm', 'music'], 'audio');
	const sfxPath = pick(manifest, ['spin', 'sfx'], 'audio');
	if (!modelPath)
		throw new Error('the bundle has no model');

	const [gltf, hdr, tex, music, sfx] = await Promise.all([
		new GLTFLoader().loadAsync(modelPath),
		hdrPath ? new HDRLoader().loadAsync(hdrPath) : null,
		texPath ? new THREE.TextureLoader().loadAsync(texPath) : null,
		ready($('music'), musicPath),
		ready($('sfx'), sfxPath),
	]);
	if (hdr) {
		hdr.mapping = THREE.EquirectangularReflectionMapping;
		const pmrem = new THREE.PMREMGenerator(renderer);
		scene.environment = pmrem.fromEquirectangular(hdr).texture;
		scene.background = hdr;
	}
	scene.add(new THREE.HemisphereLight(0xffffff, 0x222233, 1));

	// The wheel turns about its axle (the view axis), centred.
	const wheel = new THREE.Group();
	const model = gltf.scene;
	const box = new THREE.Box3().setFromObject(model);
	const size = box.getSize(new THREE.Vector3()).length() || 1;
	model.position.sub(box.getCenter(new THREE.Vector3()));
	wheel.add(model);
	scene.add(wheel);
	if (tex) {
		tex.colorSpace = THREE.SRGBColorSpace;
		const floor = new THREE.Mesh(new THREE.CircleGeometry(size, 48),
		    new THREE.MeshStandardMaterial({ map: tex }));
		floor.rotation.x = -Math.PI / 2;
		floor.position.y = -size / 2;
		scene.add(floor);
	}
	camera.position.set(0, size * 0.1, size * 1.9);
	camera.lookAt(0, 0, 0);
	camera.near = size / 100;
	camera.far = size * 100;
	camera.updateProjectionMatrix();

	let meshes = 0;
	model.traverse((o) => { if (o.isMesh) meshes++; });

	const difficulty = (cfg.settings && cfg.settings.difficulty) || {};
	const p = typeof difficulty.win_probability === 'number' ?
	    difficulty.win_probability : 0.5;
	const copy = cfg.copy || {};
	const spinMs = (cfg.mechanics && cfg.mechanics.spin_duration_ms) || 3000;
	let spin = null;
	$('spin').disabled = false;
	$('spin').addEventListener('click', () => {
		if (spin)
			return;
		const win = Math.random() < p;
		$('message').textContent = '';
		$('music').play().catch(() => {});
		$('sfx').currentTime = 0;
		$('sfx').play().catch(() => {});
		spin = { start: performance.now(), from: wheel.rotation.z,
		    turns: 4 + Math.random(), win };
	});
	renderer.setAnimationLoop((now) => {
		if (spin) {
			const t = Math.min(1, (now - spin.start) / spinMs);
			const ease = 1 - Math.pow(1 - t, 3);
			wheel.rotation.z = spin.from + ease * spin.turns * 2 * Math.PI;
			if (t === 1) {
				$('message').textContent = spin.win ?
				    copy.win_message || 'You win!' :
				    copy.lose_message || 'Try again!';
				spin = null;
			}
		}
		renderer.render(scene, camera);
	});
	addEventListener('resize', () => {
		camera.aspect = innerWidth / innerHeight;
		camera.updateProjectionMatrix();
		renderer.setSize(innerWidth, innerHeight);
	});
	renderer.render(scene, camera);
	window.miResult = { ok: meshes > 0, meshes, bundle_id: manifest.bundle_id,
	    environment: !!hdr, texture: !!tex, music_ready: music &&
	    $('music').readyState >= 2, sfx_ready: sfx &&
	    $('sfx').readyState >= 2 };
}

main().catch((e) => {
	console.error(String(e && e.stack || e));
	window.miResult = { ok: false, error: String(e) };
});
