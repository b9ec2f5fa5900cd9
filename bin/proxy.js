#!/usr/bin/env -S node --initial-old-space-size=256
// Why the flag: every socket read and every sealed or opened record is a new buffer outside the
// JavaScript heap. Once the heap has grown past a few MiB (this CLI's own code does), V8 starts a
// full collection for each 64 MiB or so of such buffers, dead or alive; at a gigabit that is a
// mark-compact every half second in each process, a third of the proxy's time. A larger initial
// old space leaves them to the young-generation collections that free them anyway; peak RSS
// did not change in the bench (README, "Performance": "Garbage collection").
import { main } from '../dist/src/cli/main.js';

main(process.argv);
