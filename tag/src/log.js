// Debug output. Off by default: the tag stays silent in the host page's console.

export const dbg = { on: false }

// Logs to the console only in debug mode (intilery.debug(true) or load option debug).
export function log(...a) {
  if (dbg.on) console.log('[intilery]', ...a)
}
