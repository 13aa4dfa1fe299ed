import { invalid, type OtaError } from '../../errors';

/**
 * The services check names and tokens before they write; with several instances two requests can
 * still pass the check together. The database's unique constraints then decide, and the loser gets
 * the same message the check would have given.
 */
const MESSAGES: Record<string, string> = {
  devices_tenant_name: 'Device with such name already exists!',
  devices_access_token: 'Device credentials are already assigned to another device!',
  device_profiles_tenant_name: 'Device profile with such name already exists!',
  device_profiles_default: 'Another default device profile is present in scope of current tenant!',
  ota_packages_tenant_title_version: 'OtaPackage with such title and version already exists!',
  users_email: 'User with such email already exists!',
  tenant_profiles_name: 'Tenant profile with such name already exists!',
};

/** PostgreSQL's SQLSTATE for unique_violation. */
const UNIQUE_VIOLATION = '23505';

/** The OtaError for a unique-constraint violation we know; the error itself otherwise. */
export function mapConstraintError(err: unknown): OtaError | unknown {
  const e = err as { code?: string; constraint?: string };
  if (e.code === UNIQUE_VIOLATION && e.constraint && MESSAGES[e.constraint]) return invalid(MESSAGES[e.constraint]);
  return err;
}

/** Runs a write, turning a known unique-constraint violation into its OtaError. */
export async function writing<T>(run: Promise<T>): Promise<T> {
  try {
    return await run;
  } catch (err) {
    throw mapConstraintError(err);
  }
}
