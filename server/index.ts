export { OtaEngine, DEFAULTS, type EngineOptions } from './engine';
export { consoleLogger, type Logger } from './logger';
export { acquireEngine, releaseEngine } from './engine-registry';
export { OtaError, ErrorCode } from './errors';
export type { OtaPackage, OtaPackageType } from './store/ota-packages';
export type { Device } from './store/devices';
export type { DeviceProfile } from './store/device-profiles';
export { CHECKSUM_ALGORITHMS, parseChecksumAlgorithm, type ChecksumAlgorithm } from './packages/checksum';
