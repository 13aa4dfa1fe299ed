import type { DeviceId, OtaPackageId, TenantId } from '../ids';
import type { OtaPackageType } from '../store/ota-packages';
import type { TelemetryEntry } from '../store/telemetry';
import type { AttributeMap } from '../store/attributes';

export type Transport = 'HTTP' | 'MQTT' | 'COAP' | 'LWM2M';

interface UplinkBase {
  tenantId: TenantId;
  deviceId: DeviceId;
  deviceName: string;
  transport: Transport;
  ts: number;
}

/** What devices send, as the transports hand it to the flow (and the state tracker). */
export type UplinkEvent =
  | (UplinkBase & { kind: 'telemetry'; entries: TelemetryEntry[] })
  | (UplinkBase & { kind: 'attributes'; attributes: AttributeMap })
  | (UplinkBase & {
      kind: 'download';
      type: OtaPackageType;
      packageId: OtaPackageId;
      /** Bytes sent in this response, and where they started in the package. */
      bytes: number;
      offset: number;
      size: number;
    });
