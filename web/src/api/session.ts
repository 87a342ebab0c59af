/**
 * Where the browser keeps its token: sessionStorage by default (gone when
 * the tab closes), localStorage when "remember me" was ticked. Signing out
 * clears both.
 */
const KEY = "turnout.token";

export function storedToken(): string | null {
  try {
    return sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function storeToken(token: string, remember: boolean): void {
  clearToken();
  (remember ? localStorage : sessionStorage).setItem(KEY, token);
}

export function clearToken(): void {
  try {
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
  } catch {
    // Storage disabled: nothing was kept either.
  }
}
