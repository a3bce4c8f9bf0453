// Who the visitor is: anonymousId and userId (cookie + localStorage), traits and group.

import { get, json, set } from './storage.js'

// Every key that describes the visitor (sid, sat: the session's start and last call); reset() and
// optOut() clear them, optIn() stores them.
export const KEYS = ['aid', 'uid', 'traits', 'gid', 'gtraits', 'sid', 'sat']

// A random UUID v4 (crypto.randomUUID needs a secure context; this does not).
export const uuid = () =>
  ([1e7] + -1e3 + -4e3 + -8e3 + -1e11).replace(/[018]/g, c =>
    (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)
  )

// A stored object (traits), {} when absent or malformed.
export const obj = k => json(get(k)) || {}

// intilery.user(): the visitor as analytics.js exposes it.
export const user = {
  id: () => get('uid'),
  anonymousId: () => get('aid') || set('aid', uuid()),
  traits: () => obj('traits'),
}
