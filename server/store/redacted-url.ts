/** A database URL fit for a message or a log line: its password, if any, replaced by `***`. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    // Not a URL (a file name, say): still hide what looks like `user:password@`.
    return url.replace(/\/\/([^@/:]*)(:[^@/]*)?@/, (_m, user: string, password: string | undefined) => `//${user}${password ? ':***' : ''}@`);
  }
}
