// `npm run vendor`: copy the pinned browser builds from node_modules into each
// lesson's static/vendor/ folder, so lessons run with no Node.js and no internet.
// Run `npm ci` first. The copied files are committed; tests/test_vendor.py
// checks that each one is exactly the file of the version package-lock.json pins.
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

// file in node_modules -> name in static/vendor/, for every lesson with a page
const SHIPPED = {
  "socket.io-client/dist/socket.io.min.js": "socket.io.min.js",
};

// Extra files for one lesson only. 03_pitfalls/old_client shows what the 2019
// post's client (socket.io 1.5.1, installed under the alias
// "socket.io-client-1.5.1" in package.json) meets on today's server; 1.5.1
// ships no minified build, so its bundled socket.io.js is used.
const SHIPPED_TO = {
  "03_pitfalls": {
    "socket.io-client-1.5.1/socket.io.js": "socket.io-1.5.1.js",
  },
};

const lessons = readdirSync("lessons").filter((name) => existsSync(join("lessons", name, "templates")));
for (const lesson of lessons) {
  const vendor = join("lessons", lesson, "static", "vendor");
  mkdirSync(vendor, { recursive: true });
  for (const [source, target] of Object.entries({ ...SHIPPED, ...SHIPPED_TO[lesson] })) {
    copyFileSync(join("node_modules", source), join(vendor, target));
    console.log(`${source} -> ${join(vendor, target)}`);
  }
}
