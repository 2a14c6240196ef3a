// The campaign's prize wheel (GLB) lit by its HDRI, on its floor texture,
// with the music and sound effects wired to the spin button.  Asset URLs
// come from assets.json, written by examples/demo.sh (signed URLs from
// mi-serve).  window.miResult reports what loaded, for the browser test.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { RGBELoader } from 'three/addons/loaders/RGBELoader.js';

const status = document.getElementById('status');
const st = { ok: false, meshes: 0, errors: [] };

const assets = await (await fetch('assets.json')).json();

const renderer = new THREE.WebGLRenderer({ antialias: true });
renderer.setSize(innerWidth, innerHeight);
renderer.toneMapping = THREE.ACESFilmicToneMapping;
document.body.prepend(renderer.domElement);

const scene = new THREE.Scene();
const camera = new THREE.PerspectiveCamera(45, innerWidth / innerHeight,
    0.1, 100);
camera.position.set(0, 1.3, 2.6);
camera.lookAt(0, 0.9, 0);
addEventListener('resize', () => {
	camera.aspect = innerWidth / innerHeight;
	camera.updateProjectionMatrix();
	renderer.setSize(innerWidth, innerHeight);
});

function fail(what, e) {
	st.errors.push(`${what}: ${e && e.message || e}`);
	status.textContent = `could not load ${what}`;
}

const hdr = new Promise((resolve) => {
	new RGBELoader().load(assets.environment_map, (tex) => {
		tex.mapping = THREE.EquirectangularReflectionMapping;
		scene.environment = tex;
		scene.background = tex;
		resolve();
	}, undefined, (e) => { fail('environment map', e); resolve(); });
});

if (assets.floor_texture) {
	const tex = new THREE.TextureLoader().load(assets.floor_texture);
	tex.wrapS = tex.wrapT = THREE.RepeatWrapping;
	tex.repeat.set(6, 6);
	const floor = new THREE.Mesh(new THREE.PlaneGeometry(20, 20),
	    new THREE.MeshStandardMaterial({ map: tex, roughness: 0.4 }));
	floor.rotation.x = -Math.PI / 2;
	scene.add(floor);
}

let wheel = null;
const model = new Promise((resolve) => {
	new GLTFLoader().load(assets.prize_wheel, (gltf) => {
		wheel = gltf.scene;
		let n = 0;
		wheel.traverse((o) => { if (o.isMesh) n++; });
		st.meshes = n;
		/* Centre the model a little above the floor, 1.6 units across. */
		const box = new THREE.Box3().setFromObject(wheel);
		const size = box.getSize(new THREE.Vector3()).length();
		const centre = box.getCenter(new THREE.Vector3());
		const k = 1.6 / (size || 1);
		const pivot = new THREE.Group();
		wheel.position.copy(centre).multiplyScalar(-k);
		wheel.scale.setScalar(k);
		pivot.add(wheel);
		pivot.position.y = 0.9;
		scene.add(pivot);
		wheel = pivot;
		resolve();
	}, undefined, (e) => { fail('model', e); resolve(); });
});

if (assets.intro_video) {
	const v = document.getElementById('intro');
	v.src = assets.intro_video;
	v.play().catch(() => {});
}

const sound = (name) => assets[name] ? new Audio(assets[name]) : null;
const bgm = sound('bgm');
if (bgm) bgm.loop = true;
let spinning = 0;
document.getElementById('spin').addEventListener('click', () => {
	if (bgm && bgm.paused) bgm.play().catch(() => {});
	sound('sfx_click')?.play().catch(() => {});
	sound('sfx_spin')?.play().catch(() => {});
	spinning = 2.5;
	setTimeout(() => {
		const win = Math.random() < 0.5;
		sound(win ? 'sfx_win' : 'sfx_lose')?.play().catch(() => {});
		status.textContent = win ? 'You win!' : 'Try again tomorrow';
	}, 2500);
});

await Promise.all([hdr, model]);
st.ok = st.errors.length === 0 && st.meshes > 0;
if (st.ok)
	status.textContent = `${st.meshes} meshes loaded`;

let last = performance.now();
let frames = 0;
renderer.setAnimationLoop((now) => {
	const dt = (now - last) / 1000;
	last = now;
	if (wheel) {
		wheel.rotation.y += dt * (0.3 + spinning * 4);
		spinning = Math.max(0, spinning - dt);
	}
	renderer.render(scene, camera);
	/* Report once a few frames are on screen. */
	if (++frames === 5)
		window.miResult = st;
});
