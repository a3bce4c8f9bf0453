// The demo shop's own script: catalog, cart, sign-in state, consent banner, outbound links.
// It talks to the tag only through the public API (intilery.track / identify / reset / optIn / optOut).
(function () {
  "use strict";

  var CATALOG = {
    "mug-01": { name: "Enamel Mug", price: 12.5, category: "Kitchen", color: "#ffa94d" },
    "tee-02": { name: "Organic Tee", price: 24.0, category: "Clothing", color: "#69db7c" },
    "lamp-03": { name: "Desk Lamp", price: 49.9, category: "Home", color: "#74c0fc" },
    "pack-04": { name: "Day Pack", price: 65.0, category: "Outdoor", color: "#b197fc" }
  };

  function load(key, fallback) {
    try { return JSON.parse(localStorage.getItem(key)) || fallback; } catch (e) { return fallback; }
  }
  function save(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode: keep going */ }
  }
  function $(selector) { return document.querySelector(selector); }
  function productFields(sku) {
    var p = CATALOG[sku];
    return { product_id: sku, sku: sku, name: p.name, price: p.price, category: p.category, currency: "GBP" };
  }

  var shop = window.shop = {
    catalog: CATALOG,
    cart: function () { return load("demo_cart", []); },
    user: function () { return load("demo_user", null); },

    addToCart: function (sku) {
      var cart = shop.cart();
      cart.push(sku);
      save("demo_cart", cart);
      var fields = productFields(sku);
      fields.quantity = 1;
      intilery.track("Product Added", fields);
      renderHeader();
    },

    signIn: function (email, name) {
      var userId = "u_" + email.toLowerCase().replace(/[^a-z0-9]+/g, "_");
      save("demo_user", { id: userId, email: email, name: name });
      intilery.identify(userId, { email: email, name: name });
      intilery.track("Signed In", { method: "password" });
    },

    signOut: function () {
      intilery.track("Signed Out");
      intilery.reset();
      try { localStorage.removeItem("demo_user"); localStorage.removeItem("demo_cart"); } catch (e) { /* ignore */ }
    },

    checkout: function () {
      var cart = shop.cart();
      if (!cart.length) return null;
      var products = cart.map(function (sku) { var f = productFields(sku); f.quantity = 1; return f; });
      var revenue = products.reduce(function (sum, p) { return sum + p.price; }, 0);
      var order = { order_id: "ord_" + Date.now().toString(36), revenue: Math.round(revenue * 100) / 100, currency: "GBP", products: products };
      intilery.track("Order Completed", order);
      save("demo_cart", []);
      return order;
    },

    productFields: productFields
  };

  function renderHeader() {
    var user = shop.user();
    var count = shop.cart().length;
    var cartLink = $("#cart-link");
    if (cartLink) cartLink.textContent = "Cart (" + count + ")";
    var account = $("#account");
    if (!account) return;
    account.innerHTML = "";
    var link = document.createElement("a");
    if (user) {
      link.href = "/"; link.id = "sign-out"; link.textContent = "Sign out (" + user.name + ")";
      link.addEventListener("click", function (e) { e.preventDefault(); shop.signOut(); location.href = "/"; });
    } else {
      link.href = "/signin.html"; link.id = "sign-in"; link.textContent = "Sign in";
    }
    account.appendChild(link);
  }

  function consentBanner() {
    if (load("demo_consent", null) !== null) return;
    var banner = document.createElement("div");
    banner.id = "consent";
    banner.innerHTML = '<p>We use first-party analytics to improve the shop. OK?</p>' +
      '<button id="consent-accept">Accept</button><button id="consent-decline" class="secondary">Decline</button>';
    document.body.appendChild(banner);
    $("#consent-accept").addEventListener("click", function () { save("demo_consent", true); intilery.optIn(); banner.remove(); });
    $("#consent-decline").addEventListener("click", function () { save("demo_consent", false); intilery.optOut(); banner.remove(); });
  }

  // Outbound links: track, then leave (the tag's beacon path covers the unload).
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a[data-outbound]");
    if (a) intilery.track("Outbound Link Clicked", { url: a.href, text: a.textContent.trim() });
  });

  document.addEventListener("DOMContentLoaded", function () { renderHeader(); consentBanner(); });
})();
