/** Where the engine reports; the nodes route it to Node-RED's log. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export const consoleLogger: Logger = {
  info: (m) => console.log(`[ota] ${m}`),
  warn: (m) => console.warn(`[ota] ${m}`),
  error: (m) => console.error(`[ota] ${m}`),
};
