#!/usr/bin/env python3
"""Generates the Postman collections in this folder.

Run `python3 postman/generate.py` after editing; CI checks the committed JSON
is what this script produces. Plain Python, no dependencies.
"""
import json
import os
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def script(lines):
    return {"type": "text/javascript", "exec": list(lines)}


def req(name, method, path, body=None, tests=(), pre=(), token=None):
    parts = [p for p in path.strip("/").split("/")]
    if path.endswith("/"):
        parts.append("")
    r = {"method": method, "header": [],
         "url": {"raw": "{{baseUrl}}" + path, "host": ["{{baseUrl}}"], "path": parts}}
    if token:
        r["header"].append({"key": "Authorization", "value": "Bearer {{%s}}" % token})
    if body is not None:
        r["header"].append({"key": "Content-Type", "value": "application/json"})
        r["body"] = {"mode": "raw", "raw": json.dumps(body, indent=2, ensure_ascii=False),
                     "options": {"raw": {"language": "json"}}}
    # Every request states its own credentials (Bearer); Postman's cookie jar
    # would otherwise send the last login's session cookie along.
    item = {"name": name, "request": r, "event": [],
            "protocolProfileBehavior": {"disableCookies": True}}
    if pre:
        item["event"].append({"listen": "prerequest", "script": script(pre)})
    if tests:
        item["event"].append({"listen": "test", "script": script(tests)})
    return item


def status(code, text):
    return ["pm.test('%d %s', function () { pm.response.to.have.status(%d); });" % (code, text, code)]


def error(code, text, reason):
    return status(code, text) + [
        "pm.test('error body {code, message, reason: %s}', function () {" % reason,
        "    const e = pm.response.json();",
        "    pm.expect(e.code).to.eql(%d);" % code,
        "    pm.expect(e.message).to.be.a('string').and.not.empty;",
        "    pm.expect(e.reason).to.eql('%s');" % reason,
        "});",
    ]


def new_user(prefix):
    """Pre-request lines that put random registration data in <prefix>* variables."""
    return [
        "// Random data for this run; a suffix keeps usernames unique across runs.",
        "const suffix = Date.now().toString(36) + Math.floor(Math.random() * 1e6).toString(36);",
        "const set = (k, v) => pm.collectionVariables.set('%s' + k, v);" % prefix,
        "set('Username', pm.variables.replaceIn('{{$randomUserName}}').replace(/[^A-Za-z0-9._-]/g, '') + '_' + suffix);",
        "set('FirstName', pm.variables.replaceIn('{{$randomFirstName}}'));",
        "set('LastName', pm.variables.replaceIn('{{$randomLastName}}'));",
        "set('Email', 'u' + suffix + '@' + pm.variables.replaceIn('{{$randomDomainName}}'));",
        "set('Phone', pm.variables.replaceIn('{{$randomPhoneNumber}}'));",
        "set('Password', pm.variables.replaceIn('{{$randomPassword}}') + 'A1!');",
    ]


def register_body(p):
    return {"username": "{{%sUsername}}" % p, "firstName": "{{%sFirstName}}" % p,
            "lastName": "{{%sLastName}}" % p, "email": "{{%sEmail}}" % p,
            "phone": "{{%sPhone}}" % p, "password": "{{%sPassword}}" % p}


def register_tests(p):
    v = "pm.collectionVariables.get('%s%%s')" % p
    return status(201, "Created") + [
        "const user = pm.response.json();",
        "pm.test('body is the created user, without the password', function () {",
        "    pm.expect(user.id).to.be.a('number').and.above(0);",
        "    pm.expect(user.username).to.eql(%s);" % (v % "Username"),
        "    pm.expect(user.firstName).to.eql(%s);" % (v % "FirstName"),
        "    pm.expect(user.lastName).to.eql(%s);" % (v % "LastName"),
        "    pm.expect(user.email).to.eql(%s);" % (v % "Email"),
        "    pm.expect(user.phone).to.eql(%s);" % (v % "Phone"),
        "    pm.expect(user).to.not.have.property('password');",
        "});",
        "pm.test('Location is /user/{id}', function () {",
        "    pm.response.to.have.header('Location', '/user/' + user.id);",
        "});",
        "pm.collectionVariables.set('%sId', user.id);" % p,
    ]


def login(p, token_var):
    return req("Log in as %s" % p, "POST", "/login",
               body={"username": "{{%sUsername}}" % p, "password": "{{%sPassword}}" % p},
               tests=status(200, "OK") + [
                   "const body = pm.response.json();",
                   "pm.test('token, userId, expiresIn', function () {",
                   "    pm.expect(body.token).to.be.a('string').and.not.empty;",
                   "    pm.expect(body.userId).to.eql(Number(pm.collectionVariables.get('%sId')));" % p,
                   "    pm.expect(body.expiresIn).to.be.above(0);",
                   "});",
                   "pm.test('session cookie is HttpOnly and SameSite', function () {",
                   "    const c = pm.response.headers.get('Set-Cookie') || '';",
                   "    pm.expect(c).to.include('HttpOnly');",
                   "    pm.expect(c).to.include('SameSite');",
                   "});",
                   "pm.collectionVariables.set('%s', body.token);" % token_var,
               ])


LOG_BODIES = script([
    "// Show every request and response body in newman's command-line output.",
    "const reqBody = pm.request.body && pm.request.body.raw ? pm.variables.replaceIn(pm.request.body.raw) : '';",
    "console.log('>>> ' + pm.request.method + ' ' + pm.request.url.toString() + (reqBody ? '\\n' + reqBody : ''));",
    "console.log('<<< ' + pm.response.code + ' ' + pm.response.status + (pm.response.text() ? '\\n' + pm.response.text() : ''));",
])

def collection(name, description, items):
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, "otus-rs/postman/" + name)),
            "name": name,
            "description": description,
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "item": items,
        "event": [{"listen": "test", "script": LOG_BODIES}],
        "variable": [{"key": "baseUrl", "value": "http://arch.homework/otusapp", "type": "string"}],
    }


def users_collection():
    u = "user"
    return collection(
        "otus-rs users",
        "Users CRUD (homework 3), logged in: register → log in → read → update → read back → "
        "delete → the token no longer works and the user cannot log in; plus 409/400 checks. "
        "Random data on every run. Run: newman run postman/users.postman_collection.json "
        "(baseUrl defaults to http://arch.homework/otusapp; override with --env-var baseUrl=http://localhost:8000).",
        [
            req("Health", "GET", "/health/", tests=status(200, "OK") + [
                "pm.test('{\"status\": \"OK\"}', function () { pm.expect(pm.response.json()).to.eql({status: 'OK'}); });"]),
            req("Create user", "POST", "/user", body=register_body(u), pre=new_user(u), tests=register_tests(u)),
            login(u, "token"),
            req("Read user", "GET", "/user/{{userId}}", token="token", tests=status(200, "OK") + [
                "pm.test('body is the stored user', function () {",
                "    const u = pm.response.json();",
                "    pm.expect(u.id).to.eql(Number(pm.collectionVariables.get('userId')));",
                "    pm.expect(u.username).to.eql(pm.collectionVariables.get('userUsername'));",
                "    pm.expect(u.email).to.eql(pm.collectionVariables.get('userEmail'));",
                "    pm.expect(u.phone).to.eql(pm.collectionVariables.get('userPhone'));",
                "});"]),
            req("Update user", "PUT", "/user/{{userId}}", token="token",
                body={"firstName": "{{newFirstName}}", "lastName": "{{newLastName}}", "email": "{{newEmail}}"},
                pre=["pm.collectionVariables.set('newFirstName', pm.variables.replaceIn('{{$randomFirstName}}'));",
                     "pm.collectionVariables.set('newLastName', pm.variables.replaceIn('{{$randomLastName}}'));",
                     "pm.collectionVariables.set('newEmail', 'new.' + pm.collectionVariables.get('userEmail'));"],
                tests=status(200, "OK") + [
                    "pm.test('sent fields changed, others kept', function () {",
                    "    const u = pm.response.json();",
                    "    pm.expect(u.firstName).to.eql(pm.collectionVariables.get('newFirstName'));",
                    "    pm.expect(u.lastName).to.eql(pm.collectionVariables.get('newLastName'));",
                    "    pm.expect(u.email).to.eql(pm.collectionVariables.get('newEmail'));",
                    "    pm.expect(u.username).to.eql(pm.collectionVariables.get('userUsername'));",
                    "    pm.expect(u.phone).to.eql(pm.collectionVariables.get('userPhone'));",
                    "});"]),
            req("Read back updated user", "GET", "/user/{{userId}}", token="token", tests=status(200, "OK") + [
                "pm.test('the update was stored', function () {",
                "    const u = pm.response.json();",
                "    pm.expect(u.firstName).to.eql(pm.collectionVariables.get('newFirstName'));",
                "    pm.expect(u.lastName).to.eql(pm.collectionVariables.get('newLastName'));",
                "    pm.expect(u.email).to.eql(pm.collectionVariables.get('newEmail'));",
                "});"]),
            req("Duplicate username is 409", "POST", "/user",
                body={"username": "{{userUsername}}", "email": "other.{{userEmail}}", "password": "{{userPassword}}"},
                tests=error(409, "Conflict", "USERNAME_TAKEN")),
            # The user as read may be sent back (its own id); any other id is refused.
            req("Another user's id in the body is 400", "PUT", "/user/{{userId}}", token="token",
                body={"id": 987654321, "firstName": "Mallory"}, tests=error(400, "Bad Request", "READ_ONLY_FIELD")),
            req("Invalid email is 400", "PUT", "/user/{{userId}}", token="token",
                body={"email": "not-an-email"}, tests=error(400, "Bad Request", "INVALID_EMAIL")),
            req("Delete user", "DELETE", "/user/{{userId}}", token="token", tests=status(204, "No Content")),
            req("Read deleted user: the session ended with it (401)", "GET", "/user/{{userId}}", token="token",
                tests=error(401, "Unauthorized", "INVALID_SESSION")),
            req("Deleted user cannot log in (401)", "POST", "/login",
                body={"username": "{{userUsername}}", "password": "{{userPassword}}"},
                tests=error(401, "Unauthorized", "INVALID_CREDENTIALS")),
        ])


def auth_collection():
    return collection(
        "otus-rs auth",
        "Homework 5: registration, login, logout and owner-only profiles. Register user 1 → read and edit "
        "without login give 401 → log in → edit → read back → log out → the old token gives 401 → register "
        "and log in user 2 → user 2 reading, editing and deleting user 1 give 403 → user 1's profile is "
        "unchanged. Run: newman run postman/auth.postman_collection.json",
        [
            req("Register user 1", "POST", "/register", body=register_body("u1"), pre=new_user("u1"),
                tests=register_tests("u1")),
            req("Read user 1 without login (401)", "GET", "/user/{{u1Id}}",
                tests=error(401, "Unauthorized", "MISSING_CREDENTIALS")),
            req("Edit user 1 without login (401)", "PUT", "/user/{{u1Id}}", body={"firstName": "Anonymous"},
                tests=error(401, "Unauthorized", "MISSING_CREDENTIALS")),
            login("u1", "u1Token"),
            req("Edit own profile", "PUT", "/me", token="u1Token",
                body={"firstName": "{{u1NewFirstName}}", "phone": "{{u1NewPhone}}"},
                pre=["pm.collectionVariables.set('u1NewFirstName', pm.variables.replaceIn('{{$randomFirstName}}'));",
                     "pm.collectionVariables.set('u1NewPhone', pm.variables.replaceIn('{{$randomPhoneNumber}}'));"],
                tests=status(200, "OK") + [
                    "pm.test('the change is in the answer', function () {",
                    "    const u = pm.response.json();",
                    "    pm.expect(u.firstName).to.eql(pm.collectionVariables.get('u1NewFirstName'));",
                    "    pm.expect(u.phone).to.eql(pm.collectionVariables.get('u1NewPhone'));",
                    "    pm.expect(u.id).to.eql(Number(pm.collectionVariables.get('u1Id')));",
                    "});"]),
            req("Read back own profile", "GET", "/user/{{u1Id}}", token="u1Token", tests=status(200, "OK") + [
                "const u = pm.response.json();",
                "pm.test('read back shows the change', function () {",
                "    pm.expect(u.firstName).to.eql(pm.collectionVariables.get('u1NewFirstName'));",
                "    pm.expect(u.phone).to.eql(pm.collectionVariables.get('u1NewPhone'));",
                "    pm.expect(u.username).to.eql(pm.collectionVariables.get('u1Username'));",
                "});",
                "pm.collectionVariables.set('u1Profile', JSON.stringify(u));"]),
            req("Log out user 1", "POST", "/logout", token="u1Token", tests=status(204, "No Content")),
            req("Old token after logout (401)", "GET", "/me", token="u1Token",
                tests=error(401, "Unauthorized", "INVALID_SESSION")),
            req("Register user 2", "POST", "/register", body=register_body("u2"), pre=new_user("u2"),
                tests=register_tests("u2")),
            login("u2", "u2Token"),
            req("User 2 reads user 1 (403)", "GET", "/user/{{u1Id}}", token="u2Token",
                tests=error(403, "Forbidden", "NOT_OWNER")),
            req("User 2 edits user 1 (403)", "PUT", "/user/{{u1Id}}", token="u2Token",
                body={"email": "hijacked@example.com"}, tests=error(403, "Forbidden", "NOT_OWNER")),
            req("User 2 deletes user 1 (403)", "DELETE", "/user/{{u1Id}}", token="u2Token",
                tests=error(403, "Forbidden", "NOT_OWNER")),
            req("User 2 cannot use X-User-Id (403)", "GET", "/user/{{u1Id}}", token="u2Token",
                pre=["pm.request.headers.add({key: 'X-User-Id', value: pm.collectionVariables.get('u1Id')});",
                     "pm.request.headers.add({key: 'X-Login', value: pm.collectionVariables.get('u1Username')});"],
                tests=error(403, "Forbidden", "NOT_OWNER")),
            login("u1", "u1Token"),
            req("User 1's profile is unchanged", "GET", "/me", token="u1Token", tests=status(200, "OK") + [
                "pm.test('same as before user 2 tried', function () {",
                "    pm.expect(pm.response.json()).to.eql(JSON.parse(pm.collectionVariables.get('u1Profile')));",
                "});"]),
        ])


def catalog_collection():
    page_shape = [
        "const page = pm.response.json();",
        "pm.test('page shape {items, total, totalRelation, facets, limit, offset}', function () {",
        "    pm.expect(page.items).to.be.an('array');",
        "    pm.expect(page.total).to.be.a('number');",
        "    pm.expect(page.totalRelation).to.be.oneOf(['eq', 'gte']);",
        "    pm.expect(page.facets.category).to.be.an('object');",
        "    pm.expect(page.limit).to.be.a('number');",
        "    pm.expect(page.offset).to.be.a('number');",
        "});",
    ]
    # cache=off (a collection variable, e.g. --env-var cache=off): the catalog
    # runs without its search cache (the chart's cacheEnabled=false), so no
    # answer carries X-Cache.
    cache_mode = ["const cacheOn = pm.variables.get('cache') !== 'off';"]
    return collection(
        "otus-rs catalog",
        "Homework 6: product search. Needs products: CI runs `otus seed-products --count 10000 --seed 1` "
        "first (in Kubernetes: the chart's seed Job). Search «космос» returns only names containing it; "
        "another form of a word (рюкзаки) and a typo (рюкзк) find the word, the word itself ranks before "
        "longer words it begins (чай before чайник); paging, price filters and sort=price_asc behave; "
        "facets count matches per category; a repeated search is a cache hit (CACHE_ENABLED=1; with the "
        "catalog's cache off, pass --env-var cache=off and no answer may carry X-Cache); product "
        "by id; 400 for bad parameters. Run: newman run postman/catalog.postman_collection.json",
        [
            req("Search «космос»", "GET", "/products?q=космос&limit=10",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('every name contains «космос» (any case)', function () {",
                    "    pm.expect(page.items.length).to.be.above(0);",
                    "    page.items.forEach(p => pm.expect(p.name.toLowerCase()).to.include('космос'));",
                    "});",
                    "pm.test('limit 10, offset 0, total ≥ items', function () {",
                    "    pm.expect(page.limit).to.eql(10);",
                    "    pm.expect(page.offset).to.eql(0);",
                    "    pm.expect(page.total).to.be.at.least(page.items.length);",
                    "});",
                    "pm.collectionVariables.set('kosmosTotal', page.total);",
                    "pm.collectionVariables.set('page1Ids', JSON.stringify(page.items.map(p => p.id)));",
                    "pm.collectionVariables.set('productId', page.items[0].id);",
                    "pm.collectionVariables.set('product', JSON.stringify(page.items[0]));",
                ]),
            req("Next page of «космос»", "GET", "/products?q=КОСМОС&limit=10&offset=10",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('same total, other products, equal matches by id', function () {",
                    "    pm.expect(page.total).to.eql(Number(pm.collectionVariables.get('kosmosTotal')));",
                    "    const first = JSON.parse(pm.collectionVariables.get('page1Ids'));",
                    "    page.items.forEach(p => pm.expect(first).to.not.include(p.id));",
                    "    page.items.forEach(p => pm.expect(p.id).to.be.above(Math.max(...first)));",
                    "});",
                ]),
            req("Price range", "GET", "/products?minPrice=1000&maxPrice=2000&limit=50",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('every price is within 1000..2000', function () {",
                    "    pm.expect(page.items.length).to.be.above(0);",
                    "    page.items.forEach(p => { pm.expect(p.price).to.be.within(1000, 2000); });",
                    "});"]),
            req("Category and words", "GET", "/products?q=рюкзак&category=Туризм&limit=20",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('category and word both hold', function () {",
                    "    page.items.forEach(p => {",
                    "        pm.expect(p.category).to.eql('Туризм');",
                    "        pm.expect(p.name.toLowerCase()).to.include('рюкзак');",
                    "    });",
                    "});"]),
            req("Another form of the word: «рюкзаки»", "GET", "/products?q=рюкзаки&limit=20",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('finds backpacks («рюкзак»)', function () {",
                    "    pm.expect(page.items.length).to.be.above(0);",
                    "    page.items.forEach(p => pm.expect(p.name.toLowerCase()).to.match(/рюкзак/));",
                    "});",
                    "pm.collectionVariables.set('backpacks', page.total);"]),
            req("A typo: «рюкзк»", "GET", "/products?q=рюкзк&limit=20",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('finds the same backpacks', function () {",
                    "    pm.expect(page.total).to.eql(Number(pm.collectionVariables.get('backpacks')));",
                    "    page.items.forEach(p => pm.expect(p.name.toLowerCase()).to.match(/рюкзак/));",
                    "});"]),
            req("The word before longer words it begins: «чай»", "GET", "/products?q=чай&limit=20",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('tea first, not teapots (чайник)', function () {",
                    "    pm.expect(page.items.length).to.eql(20);",
                    "    page.items.forEach(p => pm.expect(p.name.toLowerCase().split(/[^а-яё0-9a-z]+/)).to.include('чай'));",
                    "});",
                    "pm.test('facets: matches per category add up to total (its lower bound above 10 000)', function () {",
                    "    const sum = Object.values(page.facets.category).reduce((a, b) => a + b, 0);",
                    "    // Facet counts are exact; total is exact only with totalRelation eq.",
                    "    if (page.totalRelation === 'eq') pm.expect(sum).to.eql(page.total);",
                    "    else pm.expect(sum).to.be.at.least(page.total);",
                    "});"]),
            req("Sorted by price", "GET", "/products?q=рюкзак&sort=price_asc&limit=50",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('cheapest first', function () {",
                    "    pm.expect(page.items.length).to.be.above(1);",
                    "    for (let i = 1; i < page.items.length; i++) {",
                    "        pm.expect(page.items[i].price).to.be.at.least(page.items[i - 1].price);",
                    "    }",
                    "});"]),
            req("Search to cache", "GET", "/products?q=синий%20рюкзак&limit=5",
                tests=status(200, "OK") + cache_mode + [
                    "if (cacheOn) pm.test('X-Cache is HIT or MISS (a catalog without its cache: --env-var cache=off)', function () {",
                    "    pm.expect(pm.response.headers.get('X-Cache')).to.be.oneOf(['HIT', 'MISS']);",
                    "});",
                    "else pm.test('no X-Cache header (cache=off: the catalog runs without its cache)', function () {",
                    "    pm.expect(pm.response.headers.has('X-Cache')).to.eql(false);",
                    "});",
                    "pm.collectionVariables.set('cachedBody', pm.response.text());",
                    "pm.collectionVariables.set('cacheTries', 0);",
                ]),
            req("Repeated search is a cache hit", "GET", "/products?q=СИНИЙ%20Рюкзак&limit=5",
                tests=status(200, "OK") + cache_mode + [
                    "// The answer is stored in the background: ask again (every 0.1 s, at most",
                    "// 50 times) until it is a hit, then check; no fixed wait.",
                    "const tries = Number(pm.collectionVariables.get('cacheTries')) + 1;",
                    "pm.collectionVariables.set('cacheTries', tries);",
                    "if (cacheOn && pm.response.headers.get('X-Cache') !== 'HIT' && tries < 50) {",
                    "    setTimeout(function () {}, 100);",
                    "    postman.setNextRequest('Repeated search is a cache hit');",
                    "} else {",
                    "    if (cacheOn) pm.test('X-Cache: HIT (case does not matter; request ' + tries + ' of at most 50)', function () {",
                    "        pm.response.to.have.header('X-Cache', 'HIT');",
                    "    });",
                    "    else pm.test('no X-Cache header (cache=off)', function () {",
                    "        pm.expect(pm.response.headers.has('X-Cache')).to.eql(false);",
                    "    });",
                    "    pm.test('the same answer, byte for byte', function () {",
                    "        pm.expect(pm.response.text()).to.eql(pm.collectionVariables.get('cachedBody'));",
                    "    });",
                    "}"]),
            req("Product by id", "GET", "/products/{{productId}}", tests=status(200, "OK") + [
                "pm.test('the product from the search', function () {",
                "    pm.expect(pm.response.json()).to.eql(JSON.parse(pm.collectionVariables.get('product')));",
                "});"]),
            req("Unknown product is 404", "GET", "/products/999999999",
                tests=error(404, "Not Found", "PRODUCT_NOT_FOUND")),
            req("Everything: total counted up to 10 000", "GET", "/products?limit=1",
                tests=status(200, "OK") + page_shape + [
                    "pm.test('exact up to 10 000, else 10 000 and gte', function () {",
                    "    pm.expect(page.total).to.be.within(1, 10000);",
                    "    if (page.totalRelation === 'gte') pm.expect(page.total).to.eql(10000);",
                    "});"]),
            req("Only short words is 400", "GET", "/products?q=ab",
                tests=error(400, "Bad Request", "QUERY_TOO_SHORT")),
            req("Past offset + limit = 10 000 is 400", "GET", "/products?offset=9995&limit=10",
                tests=error(400, "Bad Request", "INVALID_OFFSET")),
            req("limit=-1 is 400", "GET", "/products?limit=-1", tests=error(400, "Bad Request", "INVALID_LIMIT")),
            req("minPrice=abc is 400", "GET", "/products?minPrice=abc",
                tests=error(400, "Bad Request", "INVALID_PRICE")),
            req("minPrice>maxPrice is 400", "GET", "/products?minPrice=500&maxPrice=100",
                tests=error(400, "Bad Request", "INVALID_PRICE_RANGE")),
            req("An unknown sort is 400", "GET", "/products?sort=name",
                tests=error(400, "Bad Request", "INVALID_SORT")),
        ])


def write(name, coll):
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(coll, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write("users.postman_collection.json", users_collection())
    write("auth.postman_collection.json", auth_collection())
    write("catalog.postman_collection.json", catalog_collection())
