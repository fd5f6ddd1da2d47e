/**
 * Run detached by a process that exits without stopping the embedded server it used (a second
 * Ctrl-C, a crash; db/embedded.ts): `embedded-stop <dataDir> <pid of that process> <major>`. It
 * stops the server once that process's connection is gone, if nobody else uses it.
 */
import { stopIfUnused } from './embedded.ts';

const [dataDir, pid, major] = process.argv.slice(2);
if (dataDir !== undefined) await stopIfUnused(dataDir, Number(pid), major === undefined ? undefined : Number(major));
