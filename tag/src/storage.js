// Where the tag keeps state: localStorage for everything, plus a first-party cookie on the
// top-level domain for the two ids, with memory behind both so that a browser whose storage
// throws (private mode, blocked cookies, sandboxed frames) still works for the page's life.

const mem = {}
const YEAR = 31536000
const name = k => 'itl_' + k
const inCookie = k => k == 'aid' || k == 'uid'

// store.keep(): whether the privacy state lets the tag write to the browser now (set by index.js
// from privacy.js; asked on every write, so an optOut() in another tab is seen at once).
export const store = { keep: () => false }

let domain // the cookie domain, found on the first cookie write; '' means host-only

// Runs f(localStorage), swallowing what a blocked or full storage throws.
export function ls(f) {
  try {
    return f(localStorage)
  } catch (e) {}
}

// Parses JSON, giving undefined for anything malformed.
export function json(s) {
  try {
    return JSON.parse(s)
  } catch (e) {}
}

function readCookie(k) {
  try {
    const m = document.cookie.match('(^|; )' + name(k) + '=([^;]*)')
    return m && decodeURIComponent(m[2])
  } catch (e) {}
}

function writeCookie(k, v) {
  try {
    const d = document
    if (domain == null) domain = topDomain()
    d.cookie =
      name(k) + '=' + encodeURIComponent(v || '') + '; path=/; samesite=lax; max-age=' + (v ? YEAR : 0) +
      (domain ? '; domain=' + domain : '') + (location.protocol == 'https:' ? '; secure' : '')
  } catch (e) {}
}

// The shortest parent domain that accepts a cookie (example.co.uk for www.shop.example.co.uk):
// browsers refuse public suffixes, so the first one that sticks is the site's own domain.
function topDomain() {
  const d = document, parts = location.hostname.split('.')
  for (let i = parts.length - 2; i >= 0; i--) {
    const dom = '; path=/; domain=' + parts.slice(i).join('.')
    d.cookie = 'itl_tld=1' + dom
    if (d.cookie.includes('itl_tld=1')) {
      d.cookie = 'itl_tld=; max-age=0' + dom
      return parts.slice(i).join('.')
    }
  }
  return ''
}

// Reads a value: cookie first (ids), then localStorage, then memory.
export function get(k) {
  return (inCookie(k) && readCookie(k)) || ls(s => s.getItem(name(k))) || mem[k] || null
}

// Writes (or, with v null/undefined, removes) a value and returns it. While privacy forbids
// storing, only memory is written; the opt-in/out choice itself is always kept.
export function set(k, v) {
  if (v == null) delete mem[k]
  else mem[k] = v
  if (v == null || k == 'opt' || store.keep()) {
    ls(s => (v == null ? s.removeItem(name(k)) : s.setItem(name(k), v)))
    if (inCookie(k)) writeCookie(k, v)
  }
  return v
}
