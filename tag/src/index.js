// intilery.js: the Intilery website tag. Collects page views, events and identity the way
// Segment's analytics.js does, sends them to the Intilery collector, and never breaks the page.
//
// Installed either as one line, <script async src=".../intilery.js" data-write-key="...">, or
// by the stub snippet: a global `intilery` array whose methods queue calls (each with the page
// and time it was made on) until this script replaces it and replays them in order.

import { context, pageOf } from './context.js'
import { KEYS, obj, user, uuid } from './identity.js'
import { dbg, log } from './log.js'
import { CONSENT, blocked } from './privacy.js'
import * as queue from './queue.js'
import { get, local, set, store } from './storage.js'

const METHODS = 'load page track identify group alias reset ready flush optIn optOut debug'.split(' ')
const MAX_MESSAGE = 32768 // bytes: the collector's per-message limit (collector/api.py MAX_MESSAGE_BYTES)
const MAX_HELD = 100 // calls kept in memory while waiting for consent

const w = window
const d = document
const prior = w.intilery

// A second copy of the tag (pasted twice, or one-line plus stub) leaves the first one alone.
// window.intilery may also be an element with id="intilery": the tag takes the name over.
if (!(prior && prior.invoked) || Array.isArray(prior)) boot()

function boot() {
  const script = d.currentScript
  const pre = [] // calls made before load(), replayed by it
  let held = [] // messages made while waiting for consent, sent on optIn()
  let opts // load() options; set once loaded
  let lastPath, lastHref // the last page call, for single-page navigation
  let ref = d.referrer

  const now = () => new Date().toISOString()
  const here = () => [location.href, d.title, ref]

  // Runs fn later, outside the caller's stack, never letting it throw into the page.
  const later = (fn, ms) =>
    typeof fn == 'function' &&
    setTimeout(() => {
      try {
        fn()
      } catch (e) {
        log(e)
      }
    }, ms)

  // Segment's optional arguments: a trailing callback, then up to n leading ids/names
  // (strings, numbers or null), then a properties (or traits) object and an options object.
  function shuffle(a, n) {
    a = [...a]
    const fn = typeof a[a.length - 1] == 'function' && a.pop()
    const s = []
    while (a.length && s.length < n && (a[0] == null || typeof a[0] != 'object')) s.push(a.shift())
    return [s, a[0] || {}, a[1] || {}, fn]
  }

  // Builds a message at call time and queues it, holds it (consent) or drops it, saying why.
  function emit(type, fields, o, p, t, fn) {
    const why = blocked(opts)
    const m = {
      type,
      messageId: 'itl-' + uuid(),
      anonymousId: o.anonymousId || user.anonymousId(),
      userId: user.id() || undefined,
      originalTimestamp: t,
      ...fields,
      context: { ...context(p), ...o.context },
      integrations: o.integrations,
    }
    const what = type + ' ' + JSON.stringify(fields.event || fields.name || '')
    if (new Blob([JSON.stringify(m)]).size > MAX_MESSAGE) log('dropped', what + ': over 32 KB')
    else if (why == CONSENT) held.length < MAX_HELD && held.push(m), log('holding', what + ': ' + why)
    else if (why) log('dropped', what + ': ' + why)
    else queue.add(m)
    later(fn, 300)
  }

  // Stores every visitor value again: at load, refreshes the cookie's year; at optIn(), stores
  // the values read before it (from memory: once opted in, the cookie is the truth).
  const keepAll = (v = KEYS.map(get)) => KEYS.forEach((k, i) => set(k, v[i]))

  // The API methods, each given the call's arguments, page [url, title, referrer] and time.
  const api = {
    load([writeKey, o = {}]) {
      if (opts) return log('load: already loaded')
      // the collector: the host option, else where the tag came from (its origin, or a site's /p/)
      const host = o.host || new URL('.', script.src).href // throws (logged) when neither is known
      opts = o
      store.fp = o.firstParty
      dbg.on = dbg.on || !!o.debug
      queue.init(writeKey, host.replace(/\/+$/, '') + '/v1/batch')
      store.keep = () => !blocked(o)
      set('opt', get('opt')) // the choice's cookie, a year from now
      if (store.keep()) {
        // Another visitor's traits and group (signed out on a sibling subdomain): forgotten.
        if (local('aid') != get('aid')) KEYS.slice(2).forEach(k => set(k))
        keepAll()
        queue.adopt()
      }
      if (o.autoPage !== false) {
        for (const f of ['pushState', 'replaceState']) {
          const orig = history[f]
          history[f] = function () {
            const r = orig.apply(this, arguments)
            setTimeout(auto)
            return r
          }
        }
        addEventListener('popstate', () => setTimeout(auto))
        setTimeout(auto) // after the calls queued before load, which may include the first page()
      }
      pre.splice(0).forEach(call)
    },

    page(a, p, t) {
      let [[category, name], props, o, fn] = shuffle(a, 2)
      if (name == null) name = category, category = undefined
      const pg = pageOf(p)
      lastPath = pg.path
      lastHref = p[0]
      emit('page', { name, category, properties: { ...pg, name, ...props } }, o, p, t, fn)
    },

    track(a, p, t) {
      const [[event], props, o, fn] = shuffle(a, 1)
      emit('track', { event, properties: props }, o, p, t, fn)
    },

    identify(a, p, t) {
      let [[id], traits, o, fn] = shuffle(a, 1)
      const cur = user.id()
      // Another user on this browser: a fresh anonymousId and traits (as analytics.js does).
      if (id != null && cur && cur != id) set('aid', uuid()), set('traits')
      if (id != null) set('uid', '' + id)
      traits = set('traits', JSON.stringify({ ...user.traits(), ...traits }))
      emit('identify', { traits: JSON.parse(traits) }, o, p, t, fn)
    },

    group(a, p, t) {
      let [[id], traits, o, fn] = shuffle(a, 1)
      const cur = get('gid')
      if (id != null) set('gid', '' + id)
      traits = { ...(cur == get('gid') ? obj('gtraits') : {}), ...traits }
      set('gtraits', JSON.stringify(traits))
      emit('group', { groupId: get('gid'), traits }, o, p, t, fn)
    },

    alias(a, p, t) {
      const [[to, from], o, , fn] = shuffle(a, 2)
      if (to == null) return log('alias: no userId')
      emit('alias', { userId: '' + to, previousId: from || user.id() || user.anonymousId() }, o, p, t, fn)
    },

    reset() {
      KEYS.forEach(k => set(k))
    },

    ready([fn]) {
      later(fn)
    },

    flush() {
      queue.send()
    },

    optIn() {
      const v = KEYS.map(get)
      set('opt', 'in')
      keepAll(v)
      queue.adopt()
      queue.add(...held.splice(0))
    },

    optOut() {
      set('opt', 'out')
      KEYS.forEach(k => set(k))
      held = []
      queue.clear()
    },

    debug([on]) {
      dbg.on = on !== false
    },
  }

  // A page call when the path changed (page load, pushState/replaceState/popstate): once per
  // path, so a router's replaceState followed by pushState gives one page.
  function auto() {
    if (location.pathname != lastPath) {
      if (lastHref) ref = lastHref // in a single-page app the referrer is the previous page
      call(['page'])
    }
  }

  // Runs one call [method, ...args] (with .p/.t when the stub queued it); before load()
  // everything but load and debug waits in `pre`, keeping the page and time it was made on.
  function call(a) {
    try {
      const m = a[0]
      a.p = a.p || here()
      a.t = a.t || now()
      if (!opts && m != 'load' && m != 'debug') return pre.push(a)
      api[m]([].slice.call(a, 1), a.p, a.t)
    } catch (e) {
      log('error in', a && a[0], e)
    }
  }

  const global = { invoked: true, push: call, user: () => user }
  for (const m of METHODS) global[m] = (...a) => call([m, ...a])
  w.intilery = global

  const ds = (script && script.dataset) || {}
  if (ds.writeKey) call(['load', ds.writeKey, { host: ds.host, consent: ds.consent, firstParty: ds.firstParty != null }])
  if (Array.isArray(prior)) {
    prior.forEach(call)
    prior.push = call // code that kept a reference to the stub still reaches the tag
  }
}
