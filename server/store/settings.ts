/** Small values kept with the data (generated secrets). */
export interface SettingsRepository {
  get(key: string): Promise<string | null>;
  /** Stores `value` unless the key has one; answers the value kept (so two instances agree on one secret). */
  putIfAbsent(key: string, value: string): Promise<string>;
}
