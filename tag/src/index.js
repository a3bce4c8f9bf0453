// intilery.js: the Intilery website tag. Collects page views, events and identity the way
// Segment's analytics.js does, sends them to the Intilery collector, and never breaks the page.
//
// Installed either as one line, <script async src=".../intilery.js" data-write-key="...">, or
// by the stub snippet: a global `intilery` array whose methods queue calls (each with the page
// and time it was made on) until this script replaces it and replays them in order.

import { context, pageOf, params } from './context.js'
import { KEYS, obj, user, uuid } from './identity.js'
import { dbg, log } from './log.js'
import { CONSENT, blocked } from './privacy.js'
import * as queue from './queue.js'
import { get, local, set, store } from './storage.js'

const MAX_MESSAGE = 32768 // bytes: the collector's per-message limit (collector/api.py MAX_MESSAGE_BYTES)
const MAX_HELD = 100 // calls kept in memory while waiting for consent
const SESSION = 18e5 // ms without a call before the next one starts a new session (30 min; load option sessionTimeout)
const WAIT = 300 // ms at most that trackLink / trackForm / outbound links hold a navigation for their event

const w = window
const d = document
const prior = w.intilery

// A second copy of the tag (pasted twice, or one-line plus stub) leaves the first one alone.
// window.intilery may also be an element with id="intilery": the tag takes the name over.
if (!prior?.invoked || Array.isArray(prior)) boot()

function boot() {
  const script = d.currentScript
  const pre = [] // calls made before load(), replayed by it
  let held = [] // messages made while waiting for consent, sent on optIn()
  const mw = [] // source middleware, in the order added
  let opts // load() options; set once loaded
  let lastPath, lastHref // the last page call, for single-page navigation
  let ref = d.referrer

  const now = () => new Date().toISOString()
  const here = () => [location.href, d.title, ref]

  // Runs fn later, outside the caller's stack, never letting it throw into the page.
  const later = (fn, ms) =>
    setTimeout(() => {
      try {
        val(fn)
      } catch (e) {
        log(e)
      }
    }, ms)

  // x(el) when x is a function, else x (trackLink's event and properties; a callback)
  const val = (x, el) => (typeof x == 'function' ? x(el) : x)

  // Segment's optional arguments: a trailing callback, then up to n leading ids/names
  // (strings, numbers or null), then a properties (or traits) object and an options object.
  function shuffle(a, n) {
    a = [...a]
    const fn = typeof a[a.length - 1] == 'function' && a.pop()
    const s = []
    while (a.length && s.length < n && (a[0] == null || typeof a[0] != 'object')) s.push(a.shift())
    return [s, a[0] || {}, a[1] || {}, fn]
  }

  // Builds a message at call time, in its session, and passes it through the source middleware to out().
  function emit(type, fields, o, p, t, fn) {
    // the session: a new one after sessionTimeout without a call (or after reset()), its start time its id
    const at = Date.now()
    let sid = +get('sid'), start
    if (!sid || at - get('sat') > (opts.sessionTimeout || SESSION)) set('sid', (sid = at)), (start = true)
    set('sat', at)
    const m = {
      type,
      messageId: 'itl-' + uuid(),
      anonymousId: o.anonymousId || user.anonymousId(),
      userId: user.id() || undefined,
      originalTimestamp: t,
      ...fields,
      context: { ...context(p), sessionId: sid, sessionStart: start, ...o.context },
      integrations: o.integrations,
    }
    later(fn, WAIT)
    through(m, 0)
  }

  // Runs source middleware i (Segment's shape: fn({payload: {obj}, integrations, next})) on m, then
  // the next; next(null), or never calling next, drops it. Each sees a copy of m as it will be sent
  // (a JSON round trip); a message that cannot be sent as JSON is dropped, never let past them. A
  // middleware that throws passes m on as it was (it saw a copy) and the error is logged. Nothing
  // here throws into the page, even from a next called later.
  function through(m, i) {
    try {
      const f = mw[i]
      if (!f) return out(m)
      let done
      const next = x => done || ((done = 1), x && through(x.obj, i + 1))
      const c = JSON.parse(JSON.stringify(m))
      try {
        f({ payload: { obj: c }, integrations: m.integrations || {}, next })
      } catch (e) {
        log(e)
        next({ obj: m })
      }
    } catch (e) {
      log(e) // dropped
    }
  }

  // Queues a finished message, holds it (consent) or drops it, saying why.
  function out(m) {
    const why = queue.size(m) > MAX_MESSAGE ? 'over 32 KB' : blocked(opts)
    if (why == CONSENT) held.length < MAX_HELD && held.push(m)
    why ? log(why == CONSENT ? 'holding' : 'dropped', m.type + ' ' + JSON.stringify(m.event || m.name || '') + ': ' + why) : queue.add(m)
  }

  // Sends event (or event(el)) with properties (or properties(el)), then, when go is given (the
  // navigation or submission e started) and the page has not cancelled e, holds e and goes on
  // (once) when the event is delivered or after WAIT; unless a handler of the page that runs after
  // this one cancels e too (its preventDefault is seen): then the page has taken it over.
  function leave(e, el, event, props, go) {
    call(['track', val(event, el), val(props, el)])
    if (go && !e.defaultPrevented) {
      e.preventDefault()
      e.preventDefault = () => (go = 0)
      // decided in a task of its own: a send already under way resolves at once, and its
      // microtask runs between this listener and the page's, before the page can cancel
      const g = () => later(() => go && go((go = 0)))
      queue.send().then(g, g)
      setTimeout(g, WAIT)
    }
  }

  // Listens for type on each element (one, an array, a NodeList or a jQuery object); errors are logged.
  const listen = (els, type, f) =>
    (els.tagName ? [els] : [...els]).forEach(el =>
      el.addEventListener(type, e => {
        try {
          f(e, el)
        } catch (x) {
          log(x)
        }
      })
    )

  // A click on a link that navigates this frame: no target (or _self), no download, a plain primary click.
  const follows = (e, a) =>
    a.href && !a.target.replace(/^_self$/i, '') && !a.hasAttribute('download') && !(e.button | e.altKey | e.ctrlKey | e.metaKey | e.shiftKey) &&
    (() => (location.href = a.href))

  // Stores every visitor value again: at load, refreshes the cookie's year; at optIn(), stores
  // the values read before it (from memory: once opted in, the cookie is the truth).
  const keepAll = (v = KEYS.map(get)) => KEYS.forEach((k, i) => set(k, v[i]))

  // The API methods, each given the call's arguments, page [url, title, referrer] and time.
  const api = {
    load([writeKey, o = {}]) {
      if (opts) return
      // the collector: the host option, else where the tag came from (its origin, or a site's /p/)
      const host = o.host || new URL('.', script.src).href // throws (logged) when neither is known
      opts = o
      store.fp = o.firstParty
      o.debug && (dbg.on = 1)
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
          history[f] = function (...a) {
            later(auto) // runs after orig
            return orig.apply(this, a)
          }
        }
        addEventListener('popstate', () => later(auto))
        later(auto) // after the calls queued before load, which may include the first page()
      }
      // the query-string API, before the calls queued meanwhile (all of this page's messages carry
      // ?ajs_aid=): ?ajs_uid= with ajs_trait_<name>=, ?ajs_event= with ajs_prop_<name>=
      const q = params(location, 'ajs_')
      q.aid && set('aid', q.aid)
      q.uid && call(['identify', q.uid, params(location, 'ajs_trait_')])
      q.event && call(['track', q.event, params(location, 'ajs_prop_')])
      pre.splice(0).forEach(call)
      if (o.trackOutbound)
        listen([d], 'click', e => {
          const a = e.target.closest?.('a')
          if (/^http/.test(a?.protocol) && a.host != location.host)
            leave(e, a, 'Outbound Link Clicked', { url: a.href }, follows(e, a))
        })
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
      traits = { ...user.traits(), ...traits }
      set('traits', JSON.stringify(traits))
      emit('identify', { traits }, o, p, t, fn)
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

    setAnonymousId([id]) {
      id != null && set('aid', '' + id)
    },

    addSourceMiddleware([f]) {
      mw.push(f)
    },

    trackLink([els, event, props]) {
      listen(els, 'click', (e, a) => leave(e, a, event, props, follows(e, a)))
    },

    trackForm([els, event, props]) {
      listen(els, 'submit', (e, f) =>
        leave(e, f, event, props, () => {
          // the pressed button's name=value, which form.submit() leaves out; the prototype's submit:
          // a control named submit hides the form's own, not a new form's
          const s = e.submitter, i = f.appendChild(d.createElement('input'))
          s && ((i.name = s.name), (i.value = s.value))
          d.createElement('form').submit.call(f)
          i.remove()
        })
      )
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
      api[m](a.slice(1), a.p, a.t)
    } catch (e) {
      log(e)
    }
  }

  // intilery.group() without arguments is the group, as analytics.group() is
  const group = { id: () => get('gid'), traits: () => obj('gtraits') }
  const global = { invoked: true, push: call, user: () => user }
  for (const m in api) global[m] = (...a) => (m == 'group' && !a.length ? group : call([m, ...a]))
  w.intilery = global

  const ds = script?.dataset || {}
  if (ds.writeKey) call(['load', ds.writeKey, { host: ds.host, consent: ds.consent, firstParty: ds.firstParty != null }])
  if (Array.isArray(prior)) {
    prior.forEach(call)
    prior.push = call // code that kept a reference to the stub still reaches the tag
  }
}
