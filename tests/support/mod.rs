pub mod article_server;
