// Where the tag keeps state: localStorage for everything, plus a first-party cookie on the
// top-level domain for the two ids and the opt-in/out choice, with memory behind both so that a
// browser whose storage throws (private mode, blocked cookies, sandboxed frames) still works for
// the page's life. Where cookies work, the cookie is the one truth for those three: it spans the
// subdomains, localStorage does not, so a sign-out or opt-out on one subdomain holds on all.
// In first-party mode (store.fp) the collector sets itl_aid (a server cookie outlives Safari's
// 7-day cap on script storage); the tag reads it first, keeps its own copy in localStorage until
// the collector's answer sets it, and never writes it: a changed id only expires it.

const mem = {}
const YEAR = 31536000
const name = k => 'itl_' + k
const inCookie = k => k == 'aid' || k == 'uid' || k == 'opt'

// store.keep(): whether the privacy state lets the tag write to the browser now (set by index.js
// from privacy.js; asked on every write, so an optOut() in another tab is seen at once).
// store.fp: first-party mode (load option firstParty).
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

// A cookie's value, '' when absent, undefined when cookies cannot be used here.
function readCookie(k) {
  try {
    const m = navigator.cookieEnabled && document.cookie.match('(^|; )' + name(k) + '=([^;]*)')
    return m ? decodeURIComponent(m[2]) : m == null ? '' : undefined
  } catch (e) {}
}

// Writes (or with v empty, expires) a cookie on dom, by default the top-level domain.
function writeCookie(k, v, dom) {
  try {
    if (domain == null) domain = topDomain()
    if (dom == null) dom = domain
    document.cookie =
      name(k) + '=' + encodeURIComponent(v || '') + '; path=/; samesite=lax; max-age=' + (v ? YEAR : 0) +
      (dom ? '; domain=' + dom : '') + (location.protocol == 'https:' ? '; secure' : '')
  } catch (e) {}
}

// Expires the collector's itl_aid for this host and every parent domain (cookie_domain is one of them).
function expireAid() {
  const p = location.hostname.split('.')
  for (let i = p.length; i >= 0; i--) writeCookie('aid', '', p.slice(i).join('.'))
}

// The shortest parent domain that accepts a cookie (example.co.uk for www.shop.example.co.uk):
// browsers refuse public suffixes, so the first one that sticks is the site's own domain.
function topDomain() {
  const d = document, parts = location.hostname.split('.')
  for (let i = parts.length - 2; i >= 0; i--) {
    const top = parts.slice(i).join('.'), dom = '; path=/; domain=' + top
    d.cookie = 'itl_tld=1' + dom
    if (d.cookie.includes('itl_tld=1')) {
      d.cookie = 'itl_tld=; max-age=0' + dom
      return top
    }
  }
  return ''
}

// This origin's own copy of a value in localStorage (never the cookie).
export const local = k => ls(s => s.getItem(name(k)))

// Reads a value. The ids and the choice: the cookie where cookies work (memory while privacy
// forbids storing ids, e.g. waiting for consent); elsewhere and for the rest, localStorage, then memory.
// First-party mode before the collector has set itl_aid: the tag's own copy.
export function get(k) {
  const c = inCookie(k) ? readCookie(k) : undefined
  return (c == null || (!c && k == 'aid' && store.fp) ? local(k) || mem[k] : c || (k != 'opt' && !store.keep() && mem[k])) || null
}

// Writes (or, with v null/undefined, removes) a value and returns it. While privacy forbids
// storing, only memory is written; the opt-in/out choice itself is always kept.
export function set(k, v) {
  if (v == null) delete mem[k]
  else mem[k] = v
  if (v == null || k == 'opt' || store.keep()) {
    ls(s => (v == null ? s.removeItem(name(k)) : s.setItem(name(k), v)))
    if (k == 'aid' && store.fp) readCookie(k) && readCookie(k) != v && expireAid()
    else if (inCookie(k)) writeCookie(k, v)
  }
  return v
}
