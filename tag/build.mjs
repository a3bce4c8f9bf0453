// Builds tag/src into collector/static/intilery.js, the file the collector serves: esbuild bundles
// and simplifies, then terser compresses and mangles (two passes, safe transforms only: about 4 %
// smaller gzip than esbuild alone, which the 4,096-byte budget needs).
//   node build.mjs            write it (and print its size, raw and gzip -9)
//   node build.mjs --check    exit 1 when the shipped file differs from a fresh build
//   node build.mjs --out F    write the build to F instead
import { build } from 'esbuild'
import { minify } from 'terser'
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

const path = p => fileURLToPath(new URL(p, import.meta.url))
const pkg = JSON.parse(readFileSync(path('package.json'), 'utf8'))
const shipped = path('../collector/static/intilery.js')
const args = process.argv.slice(2)

const result = await build({
  entryPoints: [path('src/index.js')],
  bundle: true,
  minifySyntax: true, // names are left to terser, which mangles them into a smaller gzip
  minifyWhitespace: true,
  format: 'iife',
  target: 'es2020',
  charset: 'utf8',
  legalComments: 'none',
  define: { VERSION: JSON.stringify(pkg.version) },
  write: false,
  logLevel: 'warning',
})
const squeezed = await minify(result.outputFiles[0].text, {
  ecma: 2020,
  toplevel: true,
  compress: { passes: 2 },
  mangle: { toplevel: true },
  format: { ascii_only: false },
})
const code = Buffer.from(squeezed.code)
const gz = gzipSync(code, { level: 9 }).length

if (args[0] == '--check') {
  let old = null
  try {
    old = readFileSync(shipped)
  } catch {}
  if (!old || !code.equals(old)) {
    console.error('collector/static/intilery.js differs from a fresh build of tag/src: run `npm run build` in tag/')
    process.exit(1)
  }
  console.log(`collector/static/intilery.js is up to date (${code.length} bytes, ${gz} bytes gzip -9)`)
} else {
  const out = args[0] == '--out' ? args[1] : shipped
  writeFileSync(out, code)
  console.log(`${out}: ${code.length} bytes, ${gz} bytes gzip -9`)
}
