export { OtaEngine, DEFAULTS, consoleLogger, type EngineOptions, type Logger } from './engine';
export { acquireEngine, releaseEngine } from './engine-registry';
export { OtaError, ErrorCode } from './errors';
export type { OtaPackage, OtaPackageType } from './ota-packages';
export type { Device } from './devices';
export type { DeviceProfile } from './device-profiles';
export { CHECKSUM_ALGORITHMS, parseChecksumAlgorithm, type ChecksumAlgorithm } from './checksum';
