import type { AttributeRepository } from '../store/attributes';
import type { TelemetryRepository } from '../store/telemetry';
import type { HttpDeviceSessions } from '../transports/http/http-transport';
import type { AssignmentService } from './assignment';
import type { Notifier } from './notifier';
import type { NotifyQueue } from './notify-queue';
import type { StateTracker } from './state-tracker';

/** The update pipeline's parts, each used by one node (or by the engine alone). */
export interface Pipeline {
  attributes: AttributeRepository;
  telemetry: TelemetryRepository;
  assignment: AssignmentService;
  queue: NotifyQueue;
  notifier: Notifier;
  tracker: StateTracker;
  httpSessions: HttpDeviceSessions;
}
