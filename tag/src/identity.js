// Who the visitor is: anonymousId and userId (cookie + localStorage), traits and group.

import { get, json, set } from './storage.js'

// Every key that describes the visitor (sid, sat: the session's start and last call); reset() and
// optOut() clear them, optIn() stores them.
export const KEYS = ['aid', 'uid', 'traits', 'gid', 'gtraits', 'sid', 'sat']

// A random UUID v4: the one in a new blob: URL (revoked at once), as every browser makes it
// (crypto.randomUUID needs a secure context; this does not).
export const uuid = (u = URL.createObjectURL(new Blob())) => (URL.revokeObjectURL(u), u.slice(-36))

// A stored object (traits), {} when absent or malformed.
export const obj = k => json(get(k)) || {}

// intilery.user(): the visitor as analytics.js exposes it.
export const user = {
  id: () => get('uid'),
  anonymousId: () => get('aid') || set('aid', uuid()),
  traits: () => obj('traits'),
}
