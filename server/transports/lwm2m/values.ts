import type { Lwm2mPath } from './paths';
import type { Lwm2mValue } from './resource-types';

/** One decoded resource (or resource instance) value and where it lives. */
export interface Lwm2mNode {
  path: Lwm2mPath;
  value: Lwm2mValue;
}
