// SPDX-License-Identifier: MIT
// Java's own HTTP clients through airlock, configured by nothing but the environment that
// `airlock env` prints (JAVA_TOOL_OPTIONS): java.net.http.HttpClient for GET, POST, an SSE
// stream and a WebSocket, and HttpsURLConnection for GET. Run by test/e2e/test_runtimes.py
// with the single-file source launcher: java RuntimeClient.java BASE_URL WS_URL PLAIN_URL
// (BASE_URL https://, PLAIN_URL http://, both through airlock).
//
// Each result is one line on stdout, for the test to judge:
//   PROXY <uri> <what the default ProxySelector chose>
//   GET|POST|URLCONNECTION|PLAIN <status> <body on one line>
//   SSE <n> <ms since the response head> <data>, then SSE_END <ms>
//   WS <message received>
// Anything that fails throws: a non-zero exit and a stack trace on stderr.
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.ProxySelector;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.HttpsURLConnection;

public class RuntimeClient {
    static final Duration TIMEOUT = Duration.ofSeconds(20);

    public static void main(String[] args) throws Exception {
        String base = args[0], ws = args[1], plain = args[2];
        for (String u : new String[] {"https://localhost/", "https://127.0.0.1/",
                                      "https://[::1]/", base + "/"})
            System.out.println("PROXY " + u + " " + ProxySelector.getDefault().select(URI.create(u)));

        // No proxy and no trust set here: the client's defaults read the system properties.
        HttpClient client = HttpClient.newBuilder().connectTimeout(TIMEOUT).build();
        HttpResponse<String> get = client.send(
            HttpRequest.newBuilder(URI.create(base + "/java-get?q=1")).timeout(TIMEOUT).build(),
            HttpResponse.BodyHandlers.ofString());
        System.out.println("GET " + get.statusCode() + " " + get.body());

        HttpResponse<String> post = client.send(
            HttpRequest.newBuilder(URI.create(base + "/java-post"))
                .timeout(TIMEOUT)
                .header("Content-Type", "text/plain")
                .POST(HttpRequest.BodyPublishers.ofString("hello from java"))
                .build(),
            HttpResponse.BodyHandlers.ofString());
        System.out.println("POST " + post.statusCode() + " " + post.body());

        HttpResponse<String> http = client.send(
            HttpRequest.newBuilder(URI.create(plain + "/java-plain")).timeout(TIMEOUT).build(),
            HttpResponse.BodyHandlers.ofString());
        System.out.println("PLAIN " + http.statusCode() + " " + http.body());

        urlConnection(base + "/java-urlconnection");
        sse(client, base + "/sse");
        webSocket(client, ws);
    }

    static void urlConnection(String url) throws Exception {
        HttpsURLConnection c = (HttpsURLConnection) new URL(url).openConnection();
        c.setConnectTimeout((int) TIMEOUT.toMillis());
        c.setReadTimeout((int) TIMEOUT.toMillis());
        try (InputStream in = c.getInputStream()) {
            String body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            System.out.println("URLCONNECTION " + c.getResponseCode() + " " + body);
        }
    }

    // Each event's arrival, timed from the response head: a buffered stream shows them all at
    // the end.
    static void sse(HttpClient client, String url) throws Exception {
        HttpResponse<InputStream> r = client.send(
            HttpRequest.newBuilder(URI.create(url))
                .timeout(TIMEOUT)
                .header("Accept", "text/event-stream")
                .build(),
            HttpResponse.BodyHandlers.ofInputStream());
        long start = System.nanoTime();
        int n = 0;
        try (BufferedReader in = new BufferedReader(
                 new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
            for (String line; (line = in.readLine()) != null;) {
                if (line.startsWith("data:"))
                    System.out.println("SSE " + n++ + " " + (System.nanoTime() - start) / 1000000
                                       + " " + line.substring(5).trim());
            }
        }
        System.out.println("SSE_END " + (System.nanoTime() - start) / 1000000);
    }

    static void webSocket(HttpClient client, String url) throws Exception {
        LinkedBlockingQueue<String> got = new LinkedBlockingQueue<>();
        WebSocket.Listener listener = new WebSocket.Listener() {
            StringBuilder text = new StringBuilder();

            @Override
            public CompletionStage<?> onText(WebSocket w, CharSequence data, boolean last) {
                text.append(data);
                if (last) {
                    got.add(text.toString());
                    text.setLength(0);
                }
                w.request(1);
                return null;
            }

            @Override
            public CompletionStage<?> onClose(WebSocket w, int code, String reason) {
                got.add("closed " + code);
                return null;
            }
        };
        WebSocket w = client.newWebSocketBuilder()
                          .connectTimeout(TIMEOUT)
                          .buildAsync(URI.create(url), listener)
                          .get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        System.out.println("WS " + take(got)); // the upstream speaks first
        w.sendText("hello from java", true).get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        System.out.println("WS " + take(got));
        w.sendClose(WebSocket.NORMAL_CLOSURE, "done").get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        System.out.println("WS " + take(got));
    }

    static String take(LinkedBlockingQueue<String> q) throws Exception {
        String s = q.poll(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        if (s == null)
            throw new IllegalStateException("no WebSocket message within " + TIMEOUT);
        return s;
    }
}
