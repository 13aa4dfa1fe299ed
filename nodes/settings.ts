/**
 * Where a node setting comes from, first found wins: the node's own field, then Node-RED's
 * settings.js (`otaServerDataDir`, `otaMqttEndpointPort`, ...), then the environment (`OTA_DATA_DIR`,
 * `OTA_MQTT_PORT`, ...). Blank values count as not set; values are trimmed. Undefined when none is
 * set, so the caller applies its default.
 */
export type SettingPicker = (own: string | undefined, setting: string, envName?: string) => string | undefined;

export function settingPicker(settings: Record<string, unknown>, env: NodeJS.ProcessEnv): SettingPicker {
  return (own, setting, envName) => {
    for (const v of [own, settings[setting], envName === undefined ? undefined : env[envName]]) {
      if (v !== undefined && v !== null && String(v).trim() !== '') return String(v).trim();
    }
    return undefined;
  };
}
