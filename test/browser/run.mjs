// Opens PAGE_URL in headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core), waits for the scene to report, saves a screenshot
// and prints {result, failed, errors} as one JSON line.  Exits 1 when the
// scene failed, a request failed or answered >= 400, or the page logged
// an error.
//   node run.mjs PAGE_URL SCREENSHOT.png
import { chromium } from 'playwright-core';
import fs from 'fs';
import os from 'os';
import path from 'path';

const [url, shot] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mi-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
	executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
	headless: true,
	viewport: { width: 640, height: 360 },
	args: [
		'--no-sandbox', '--disable-gpu', '--use-angle=swiftshader',
		'--enable-unsafe-swiftshader', '--disable-background-networking',
		'--disable-component-update', '--disable-sync', '--no-first-run',
		'--disable-default-apps', '--disable-extensions',
	],
});
const failed = [], errors = [], seen = [];
let out = { failed, errors, seen };
try {
	const page = context.pages()[0] || await context.newPage();
	page.on('requestfailed', (r) => failed.push({ url: r.url(),
	    error: r.failure() && r.failure().errorText }));
	page.on('response', (r) => {
		seen.push({ url: r.url().replace(/sig=[0-9a-f]+/, 'sig=…'),
		    status: r.status() });
		if (r.status() >= 400)
			failed.push({ url: r.url(), status: r.status() });
	});
	page.on('pageerror', (e) => errors.push(String(e)));
	page.on('console', (m) => {
		if (m.type() === 'error')
			errors.push(m.text());
	});
	await page.goto(url);
	await page.waitForFunction(() => window.miResult !== undefined,
	    null, { timeout: 60000 });
	out.result = await page.evaluate(() => window.miResult);
	await page.screenshot({ path: shot });
} catch (e) {
	errors.push(String(e));
} finally {
	await context.close();
	fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
process.exit(out.result && out.result.ok && failed.length === 0 &&
    errors.length === 0 ? 0 : 1);
