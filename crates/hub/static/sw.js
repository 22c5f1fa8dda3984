// lookout's service worker: an installable app, an offline shell that shows
// the last state this browser saw, and Web Push notifications.
"use strict";

const SHELL = "lookout-shell-v1";
const PAGES = "lookout-pages-v1";
const ASSETS = ["/static/app.css", "/static/app.js", "/static/favicon.svg", "/static/icon-192.png"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(ASSETS)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL && k !== PAGES).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// The page as it was last seen, marked as such: a banner says when.
async function offline(cached) {
  const html = await cached.text();
  const saved = cached.headers.get("x-lookout-saved") || "";
  const banner = `<p class="banner offline-banner" id="offline-banner" role="status">Offline: this is the state lookout showed <time datetime="${saved}">${saved}</time>. It updates when the hub can be reached again.</p>`;
  return new Response(html.replace("<main>", "<main>" + banner), {
    headers: { "content-type": "text/html; charset=utf-8" },
  });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    // Network first; the dashboard and service pages are kept for offline.
    event.respondWith(
      fetch(request)
        .then(async (response) => {
          const keep = response.ok && response.headers.get("content-type")?.startsWith("text/html")
            && (url.pathname === "/" || url.pathname.startsWith("/services/"));
          if (keep) {
            const body = await response.clone().text();
            const headers = new Headers(response.headers);
            headers.set("x-lookout-saved", new Date().toISOString());
            const cache = await caches.open(PAGES);
            await cache.put(url.pathname, new Response(body, { headers }));
          }
          return response;
        })
        .catch(async () => {
          const cache = await caches.open(PAGES);
          const cached = (await cache.match(url.pathname)) || (await cache.match("/"));
          if (cached) return offline(cached);
          return new Response("<!doctype html><title>Offline</title><p>lookout cannot be reached, and this browser has not seen this page yet.</p>",
            { status: 503, headers: { "content-type": "text/html; charset=utf-8" } });
        }),
    );
    return;
  }
  if (ASSETS.includes(url.pathname)) {
    // Assets: the network's if it answers, else the kept copy.
    event.respondWith(
      fetch(request)
        .then((response) => {
          const copy = response.clone();
          caches.open(SHELL).then((c) => c.put(request, copy));
          return response;
        })
        .catch(() => caches.match(request)),
    );
  }
});

// A page asks to forget what it kept (signing out).
self.addEventListener("message", (event) => {
  if (event.data === "forget") event.waitUntil(caches.delete(PAGES));
});

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (_) {
    data = { title: "lookout", body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(
    self.registration.showNotification(data.title || "lookout", {
      body: data.body || "",
      tag: data.tag || "lookout",
      renotify: true,
      icon: "/static/icon-192.png",
      badge: "/static/icon-192.png",
      data: { url: data.url || "/" },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(event.notification.data?.url || "/", self.location.origin);
  // Only the hub's own pages are opened.
  const href = target.origin === self.location.origin ? target.href : self.location.origin + "/";
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((w) => w.url === href);
      return open ? open.focus() : self.clients.openWindow(href);
    }),
  );
});
