// Loads a GLB (meshopt-compressed or not) with GLTFLoader and the
// MeshoptDecoder, renders one frame and reports the meshes, triangles
// and materials it built.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js';

const q = new URLSearchParams(location.search);

async function main() {
	const renderer = new THREE.WebGLRenderer({ preserveDrawingBuffer: true });
	renderer.setSize(480, 270);
	document.body.appendChild(renderer.domElement);
	const scene = new THREE.Scene();
	scene.add(new THREE.HemisphereLight(0xffffff, 0x333333, 2));
	const camera = new THREE.PerspectiveCamera(45, 480 / 270, 0.01, 1000);
	const loader = new GLTFLoader().setMeshoptDecoder(MeshoptDecoder);
	const gltf = await loader.loadAsync(q.get('glb'));
	scene.add(gltf.scene);
	const box = new THREE.Box3().setFromObject(gltf.scene);
	const size = box.getSize(new THREE.Vector3()).length() || 1;
	const center = box.getCenter(new THREE.Vector3());
	camera.position.copy(center).add(new THREE.Vector3(0.3, 1, 1)
	    .normalize().multiplyScalar(size * 1.1));
	camera.lookAt(center);
	renderer.render(scene, camera);
	let meshes = 0, triangles = 0, uvs = 0;
	const materials = new Set();
	gltf.scene.traverse((o) => {
		if (!o.isMesh)
			return;
		meshes++;
		const g = o.geometry;
		triangles += (g.index ? g.index.count :
		    g.attributes.position.count) / 3;
		if (g.attributes.uv)
			uvs++;
		materials.add(o.material.name || o.material.uuid);
	});
	return { ok: true, meshes, triangles, uvs, materials: materials.size,
	    extensions: gltf.parser.json.extensionsUsed || [],
	    renderer: renderer.getContext().getParameter(
	    renderer.getContext().VERSION) };
}

main().then((r) => { window.miResult = r; },
    (e) => { window.miResult = { ok: false, error: String(e) }; });
