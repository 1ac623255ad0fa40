// Build a JavaScript plugin into a component with componentize-js:
//   node guest-sdk/js/build.mjs <plugin entry .js> <out .wasm>
// The SDK (weir-guest.js) is bundled next to the entry module. No WASI
// features are enabled: the plugin gets no clocks, randomness, stdio or
// network.
import { componentize } from '@bytecodealliance/componentize-js';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [entry, out] = process.argv.slice(2);
if (!entry || !out) {
  console.error('usage: node build.mjs <entry.js> <out.wasm>');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'weir-js-'));
copyFileSync(join(here, 'weir-guest.js'), join(work, 'weir-guest.js'));
copyFileSync(resolve(entry), join(work, basename(entry)));
const { component } = await componentize({
  sourcePath: join(work, basename(entry)),
  witPath: resolve(here, '../../wit/v0.1.0'),
  worldName: 'operator-plugin',
  disableFeatures: ['http', 'stdio', 'random', 'clocks', 'fetch-event'],
});
writeFileSync(out, component);
console.error(`built ${out} (${Math.round(component.length / 1024)} KiB)`);
