// Delivery: messages wait in a queue (kept in localStorage under this tab's own key), go out in
// small batches by fetch(keepalive) with a text/plain body (no CORS preflight), are retried
// with exponential backoff and jitter, and leave by sendBeacon when the page is hidden.
// Every messageId is fixed at call time, so a message sent twice is stored once by the collector.

import { uuid } from './identity.js'
import { dbg, log } from './log.js'
import { json, ls } from './storage.js'

const MAX_BODY = 60000 // bytes per request: under the browser's 64 KB keepalive/beacon budget
const MAX_QUEUE = 200 // messages kept for later; the oldest go first
const STALE = 120000 // ms: another tab's queue untouched this long belongs to a closed tab
const PREFIX = 'itl_q.'
const me = PREFIX + uuid() // this tab's queue key: {t: last touched (0 = page gone), q: [...]}

let q = [] // waiting messages, oldest first
let url, key, timer, busy, tries = 0

const size = s => new Blob([s]).size
const body = b => JSON.stringify({ batch: b, sentAt: new Date().toISOString(), writeKey: key })
const has = (list, m) => list.some(x => x.messageId == m.messageId)

export function init(writeKey, endpoint) {
  key = writeKey
  url = endpoint
  addEventListener('pagehide', hide)
  addEventListener('visibilitychange', () => document.visibilityState == 'hidden' && hide())
  addEventListener('online', send)
}

// Saves the queue under this tab's key; t = 0 marks it orphaned (the page is going away).
function save(t = Date.now(), list = q) {
  ls(s => (list.length ? s.setItem(me, JSON.stringify({ t, q: list })) : s.removeItem(me)))
}

// Adds messages to the queue (unless already there), keeps it bounded, and schedules a send.
export function add(...ms) {
  for (const m of ms) has(q, m) || q.push(m)
  while (q.length > MAX_QUEUE) log('queue full, dropped', q.shift())
  save()
  timer || busy || (timer = setTimeout(send, 100))
}

// Takes over the queues of tabs that are gone (marked at pagehide, or untouched for STALE ms).
// Removing the key in the same step is the claim: another tab that loads later finds nothing.
export function adopt() {
  ls(s => {
    for (const k of Object.keys(s)) {
      const v = k.startsWith(PREFIX) && k != me && json(s.getItem(k))
      if (v && !(Date.now() - v.t < STALE)) {
        s.removeItem(k)
        add(...(v.q || []))
      }
    }
  })
}

export function clear() {
  q = []
  save()
}

// The oldest messages of list that fit in one request body (always at least one).
function take(list) {
  let n = 0, bytes = 200
  while (n < list.length && (bytes += size(JSON.stringify(list[n])) + 1) < MAX_BODY) n++
  return list.slice(0, n || 1)
}

// Waits ms before the next send, touching this tab's key at least every STALE / 2 meanwhile:
// a fresh key tells other tabs that this queue is still ours (even through a long Retry-After).
function pause(ms) {
  save()
  timer = setTimeout(() => (ms > STALE / 2 ? pause(ms - STALE / 2) : send()), Math.min(ms, STALE / 2))
}

const backoff = () => Math.min(30000, 1000 * 2 ** tries) * (0.5 + Math.random())

// Sends the next batch now; on success the next one follows, on failure a retry is scheduled.
export async function send() {
  clearTimeout(timer)
  timer = 0
  if (busy || !q.length || !url) return
  const b = (busy = take(q))
  let wait = 0
  try {
    const r = await fetch(url, { method: 'POST', body: body(b), keepalive: true, credentials: 'omit' })
    if (r.status == 429 || r.status > 499) wait = r.headers.get('Retry-After') * 1000 || backoff()
    else if (!r.ok) log('dropped', b.length, 'messages: HTTP', r.status) // other 4xx: retrying cannot help
    else if (dbg.on) r.json().then(j => j.rejected.forEach(x => log('rejected', b[x.index], x.message))).catch(log)
  } catch (e) {
    wait = backoff() // network error
  }
  busy = 0
  if (wait) {
    tries++
    log('retry in', wait | 0, 'ms')
    pause(wait)
  } else {
    tries = 0
    q = q.filter(m => !b.includes(m))
    save()
    send()
  }
}

// The page is hidden or going away: beacon what is not already in flight, in requests that fit
// the keepalive budget. What the queue held stays saved, marked orphaned, so that the next page
// resends it if the beacons were lost (collector down); the collector drops the duplicates.
function hide() {
  if (!url) return
  const kept = (json(ls(s => s.getItem(me))) || {}).q || []
  for (const m of q) has(kept, m) || kept.push(m)
  const rest = q.filter(m => !(busy && busy.includes(m)))
  while (rest.length) {
    const b = take(rest)
    if (!navigator.sendBeacon(url, new Blob([body(b)], { type: 'text/plain' }))) break
    rest.splice(0, b.length)
    q = q.filter(m => !b.includes(m))
  }
  save(0, kept)
}
