// How a run stops early: a failure with its protocol error code and what it concerns, or a cancel.

import { EventOf } from '../../protocol/events';

/** A failure with a protocol error code and what it concerns. */
export class RunError extends Error {
  constructor(readonly code: EventOf<'run.failed'>['code'], message: string, readonly where: { file?: string; jsonPath?: string; layer?: string } = {}, readonly hint?: string) {
    super(message);
  }
}

export class RunCancelledError extends Error {
  constructor(readonly lastLayer: string | null) {
    super('cancelled');
  }
}
