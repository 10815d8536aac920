// How the extension asks a running backend to stop: this line on the backend's stdin. One channel on every
// platform: Windows has no SIGTERM (child.kill() there is TerminateProcess, which gives the backend no chance
// to remove its temporary output), so signals are only the fallback after the grace period.

/** The line (without its newline) that cancels the run. */
export const CANCEL_REQUEST = 'cancel';
