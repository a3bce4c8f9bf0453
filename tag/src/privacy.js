// Whether the tag may store and send anything, as a reason (GoatCounter style) so that debug
// mode can say why a call was dropped. '' means tracking is allowed.

import { get } from './storage.js'

export const CONSENT = 'waiting for consent'

export function blocked(o) {
  const opt = get('opt'), n = navigator
  if (opt == 'out') return 'opted out'
  if (opt == 'in') return '' // an explicit optIn() outweighs the browser-wide signals below
  if (n.globalPrivacyControl && o.respectGPC !== false) return 'Global Privacy Control'
  if (o.respectDoNotTrack && n.doNotTrack == '1') return 'Do Not Track'
  if (o.consent == 'required') return CONSENT
  return ''
}
