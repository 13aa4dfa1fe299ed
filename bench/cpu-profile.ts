/**
 * Preloaded into a benchmark's server child (`node -r cpu-profile.js`) when BENCH_CPU_PROFILE names
 * a directory: the first SIGUSR2 starts a V8 CPU profile, the second writes it there as
 * `<pid>-<n>.cpuprofile` (open it in Chrome DevTools' Performance panel).
 * So the profile covers only the part being measured, not start-up or seeding; `node --cpu-prof`
 * cannot, and it writes nothing when the child is killed.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE;
if (dir) {
  const session = new Session();
  session.connect();
  let running = false;
  let n = 0;
  process.on('SIGUSR2', () => {
    if (!running) {
      running = true;
      session.post('Profiler.enable', () => session.post('Profiler.start'));
      return;
    }
    running = false;
    session.post('Profiler.stop', (err, res) => {
      if (err) {
        console.error(`[bench] CPU profile failed: ${err.message}`);
        return;
      }
      const file = path.join(dir, `${process.pid}-${++n}.cpuprofile`);
      writeFileSync(file, JSON.stringify(res.profile));
      console.error(`[bench] CPU profile written to ${file}`);
    });
  });
}
