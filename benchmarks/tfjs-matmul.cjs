// fp32 square matmul GFLOP/s with TensorFlow.js's wasm backend (XNNPACK, SIMD), one JSON line per size.
// Run by matmul.ts as a child process: node tfjs-matmul.cjs <sizes,comma-separated> <trials> <minSeconds>
// tfjs-wasm is single-threaded in Node (WASM_HAS_MULTITHREAD_SUPPORT is false there).
const tf = require("@tensorflow/tfjs-core");
require("@tensorflow/tfjs-backend-wasm");

const [sizesArg = "256,512,1024,2048", trialsArg = "5", minArg = "0.25"] = process.argv.slice(2);
const sizes = sizesArg.split(",").map(Number);
const trials = Number(trialsArg);
const minSeconds = Number(minArg);
const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];

async function main() {
  await tf.setBackend("wasm");
  await tf.ready();
  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
  const threads = await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT");
  for (const n of sizes) {
    const a = tf.randomNormal([n, n]);
    const b = tf.randomNormal([n, n]);
    const once = () => {
      const c = tf.matMul(a, b);
      c.dataSync();
      c.dispose();
    };
    once();
    once();
    let t0 = performance.now();
    once();
    const one = (performance.now() - t0) / 1e3;
    const iters = Math.max(1, Math.ceil(minSeconds / one));
    const ts = [];
    for (let t = 0; t < trials; t++) {
      t0 = performance.now();
      for (let i = 0; i < iters; i++) once();
      ts.push((performance.now() - t0) / 1e3 / iters);
    }
    a.dispose();
    b.dispose();
    const gflops = (2 * n ** 3) / median(ts) / 1e9;
    console.log(JSON.stringify({ n, gflops, simd, multithread: threads, tfjs: tf.version_core }));
  }
}
main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
