import type { SettingsRepository } from '../settings';
import type { Sql } from './pool';

export class PgSettingsRepository implements SettingsRepository {
  constructor(private readonly sql: Sql) {}

  async get(key: string): Promise<string | null> {
    const { rows } = await this.sql.query<{ value: string }>('SELECT value FROM settings WHERE key = $1', [key]);
    return rows[0]?.value ?? null;
  }

  /** Instances starting together race here: the first insert wins and every one reads it back. */
  async putIfAbsent(key: string, value: string): Promise<string> {
    await this.sql.query('INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, value]);
    return (await this.get(key)) ?? value;
  }
}
