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

const lessons = readdirSync("lessons").filter((name) => existsSync(join("lessons", name, "templates")));
for (const lesson of lessons) {
  const vendor = join("lessons", lesson, "static", "vendor");
  mkdirSync(vendor, { recursive: true });
  for (const [source, target] of Object.entries(SHIPPED)) {
    copyFileSync(join("node_modules", source), join(vendor, target));
    console.log(`${source} -> ${join(vendor, target)}`);
  }
}
