// Checks the running node against the "engines" of every package in an
// npm lock file (lockfileVersion 2 or 3).
//   node engines.js LOCK          prints "name version, ..." of the direct
//                                 dependencies; exits 1 when a package
//                                 needs another node
//   node engines.js --why LOCK    prints one line per package it fails
// Understands the ranges npm packages use for node: ">=18", ">= 14.17.0",
// "^18.12.0 || >=20", "18.x", ">=16 <22"; a range it cannot read counts
// as met (npm --engine-strict still checks it).
'use strict';
const fs = require('fs');

const args = process.argv.slice(2);
const why = args[0] === '--why';
const lock = JSON.parse(fs.readFileSync(why ? args[1] : args[0], 'utf8'));
const have = process.versions.node.split('.').map(Number);

function cmp(a, b) {
	for (let i = 0; i < 3; i++)
		if ((a[i] || 0) !== (b[i] || 0))
			return (a[i] || 0) < (b[i] || 0) ? -1 : 1;
	return 0;
}

// One comparator ("op version"): true, false, or null when unreadable.
function meets(c) {
	const m = /^(>=|<=|>|<|=|\^|~)?v?(\d+|x|\*)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?$/.exec(c);
	if (!m)
		return c === '*' || c === '' ? true : null;
	const op = m[1] || '=';
	const parts = [m[2], m[3], m[4]];
	const wild = parts.findIndex((p) => p === undefined || p === 'x' || p === '*');
	const v = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : 0));
	const n = wild < 0 ? 3 : wild;	// how many parts are fixed
	const r = cmp(have, v);
	const prefix = () => have.slice(0, n).every((x, i) => x === v[i]);
	switch (op) {
	case '>=': return r >= 0;
	case '>': return n < 3 ? !prefix() && r > 0 : r > 0;
	case '<=': return n < 3 ? r <= 0 || prefix() : r <= 0;
	case '<': return r < 0;
	case '=': return n < 3 ? prefix() : r === 0;
	case '^': {
		const lead = v[0] !== 0 || n === 1 ? 1 : v[1] !== 0 || n === 2 ? 2 : 3;
		return r >= 0 && have.slice(0, lead).every((x, i) => x === v[i]);
	}
	case '~': return r >= 0 && have.slice(0, Math.max(1, Math.min(n, 2)))
	    .every((x, i) => x === v[i]);
	}
	return null;
}

function satisfies(range) {
	let unknown = false;
	for (const alt of range.split('||')) {
		const cs = alt.trim().replace(/([<>=^~]+)\s+/g, '$1').split(/\s+/);
		const rs = cs.map(meets);
		if (rs.every((x) => x === true))
			return true;
		if (rs.some((x) => x === null))
			unknown = true;
	}
	return unknown;
}

const pkgs = lock.packages || {};
let ok = true;
for (const [where, p] of Object.entries(pkgs)) {
	const range = p.engines && (Array.isArray(p.engines) ? null : p.engines.node);
	if (!where || !range || satisfies(String(range)))
		continue;
	ok = false;
	if (why)
		console.log(`${where.replace(/^.*node_modules\//, '')} ${p.version} needs node ${range}`);
}
if (!why) {
	const direct = Object.keys((pkgs[''] || {}).dependencies || {});
	console.log(direct.map((d) => `${d} ${(pkgs['node_modules/' + d] || {}).version}`).join(', '));
}
process.exit(ok ? 0 : 1);
