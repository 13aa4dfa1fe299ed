// The part of lwm2m-node-lib (test-only; it ships no types) that test/support/lwm2m-client.ts uses.
declare module 'lwm2m-node-lib' {
  type Callback<T = unknown> = (error: Error | null | undefined, result?: T) => void;
  interface RegistryObject {
    objectType: string;
    objectId: string;
    objectUri: string;
    attributes: Record<string, string>;
  }
  export interface DeviceInformation {
    currentHost: string;
    currentPort: number;
    location: string;
    localPort: number;
    serverInfo: unknown;
  }
  type Handler = (objectType: string, objectId: string, resourceId: string, value: string, callback: Callback) => void;
  export const client: {
    init(config: Record<string, unknown>, callback?: () => void): void;
    register(host: string, port: number, url: string | null, endpointName: string, callback: Callback<DeviceInformation>): void;
    unregister(device: DeviceInformation, callback: Callback): void;
    update(device: DeviceInformation, callback: Callback): void;
    setHandler(serverInfo: unknown, type: 'write' | 'execute' | 'read', handler: Handler): void;
    cancellAllObservers(callback: Callback): void;
    registry: {
      create(objectUri: string, callback: Callback<RegistryObject>): void;
      remove(objectUri: string, callback: Callback): void;
      get(objectUri: string, callback: Callback<RegistryObject>): void;
      list(callback: Callback<RegistryObject[]>): void;
      setResource(objectUri: string, resourceId: string | number, value: string | number, callback: Callback): void;
    };
  };
}
