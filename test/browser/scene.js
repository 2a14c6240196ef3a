// Loads the GLB with GLTFLoader and the Radiance HDR with HDRLoader (the
// RGBELoader of three.js before r180), lights the model with the
// prefiltered environment, renders one frame and reports what it got.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { HDRLoader } from 'three/addons/loaders/HDRLoader.js';

const q = new URLSearchParams(location.search);

async function main() {
	const renderer = new THREE.WebGLRenderer({ antialias: true,
	    preserveDrawingBuffer: true });
	renderer.setSize(640, 360);
	renderer.toneMapping = THREE.ACESFilmicToneMapping;
	document.body.appendChild(renderer.domElement);

	const scene = new THREE.Scene();
	const camera = new THREE.PerspectiveCamera(45, 640 / 360, 0.01, 1000);

	const [hdr, gltf] = await Promise.all([
		new HDRLoader().loadAsync(q.get('hdr')),
		new GLTFLoader().loadAsync(q.get('glb')),
	]);
	hdr.mapping = THREE.EquirectangularReflectionMapping;
	const pmrem = new THREE.PMREMGenerator(renderer);
	scene.environment = pmrem.fromEquirectangular(hdr).texture;
	scene.background = hdr;
	scene.add(gltf.scene);

	// Frame the model whatever its size.
	const box = new THREE.Box3().setFromObject(gltf.scene);
	const size = box.getSize(new THREE.Vector3()).length() || 1;
	const center = box.getCenter(new THREE.Vector3());
	camera.position.copy(center).add(new THREE.Vector3(0.6, 0.4, 1)
	    .normalize().multiplyScalar(size * 1.2));
	camera.lookAt(center);
	renderer.render(scene, camera);

	let meshes = 0, triangles = 0;
	gltf.scene.traverse((o) => {
		if (!o.isMesh)
			return;
		meshes++;
		const g = o.geometry;
		triangles += (g.index ? g.index.count :
		    g.attributes.position.count) / 3;
	});
	const gl = renderer.getContext();
	const px = new Uint8Array(4);
	gl.readPixels(320, 180, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
	return { ok: true, meshes, triangles,
	    hdr: { width: hdr.image.width, height: hdr.image.height },
	    renderer: gl.getParameter(gl.VERSION), centerPixel: Array.from(px) };
}

main().then((r) => { window.miResult = r; },
    (e) => { window.miResult = { ok: false, error: String(e) }; });
